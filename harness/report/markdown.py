"""The readable diff report: counts, a table per area, each failing or diverging case side by side,
and the divergences accepted as documented known differences."""

from __future__ import annotations

from ..runner.outcome import CaseOutcome
from ..runner.run_state import RunState, is_not_run, reported
from .common import (
    backends_of,
    by_area,
    counts,
    is_accepted,
    marker,
    one_line,
    row_backends,
    verified,
)

STATUS_TEXT = {"pass": "pass", "fail": "**FAIL**", "skip": "skip", "error": "**ERROR**"}
NOTE_LIMIT = 160


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell: one line, no markup, pipes escaped."""
    t = one_line(text).replace("\\", "\\\\")
    for ch in "|*`":
        t = t.replace(ch, "\\" + ch)
    return t.replace("<", "&lt;").replace(">", "&gt;")


def code(text: str) -> str:
    """Inline code, also inside a table cell (a pipe needs its backslash there too; backticks become ')."""
    t = one_line(text).replace("`", "'").replace("|", "\\|")
    return f"`{t}`" if t else ""


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _short(text: str) -> str:
    t = one_line(text)
    return t if len(t) <= NOTE_LIMIT else t[: NOTE_LIMIT - 1] + "…"


def _note(o: CaseOutcome) -> str:
    if is_accepted(o):
        return cell(_short(f"accepted known difference: {o.divergence}"))
    if o.divergence and o.divergence not in o.reason:
        return cell(_short(f"divergence: {o.divergence}" + (f"; {o.reason}" if o.reason else "")))
    return cell(_short(o.reason))


def header(outcomes: list[CaseOutcome]) -> list[str]:
    c = counts(outcomes)
    backends = backends_of(outcomes)
    model_only = sum(1 for o in outcomes if not o.verified_on)
    diverging = sum(1 for o in outcomes if o.divergence)
    accepted = sum(1 for o in outcomes if is_accepted(o))
    lines = [
        "# vfio-conformance report",
        "",
        f"**{len(outcomes)} cases: {c['pass']} pass, {c['fail']} fail, {c['skip']} skip, {c['error']} error.**",
        "",
        *table(["cases", "pass", "fail", "skip", "error", "diverging", "accepted differences"],
               [[str(len(outcomes)), str(c["pass"]), str(c["fail"]), str(c["skip"]), str(c["error"]),
                 str(diverging), str(accepted)]]),
        "",
        f"- Backends: {', '.join(backends) if backends else 'none'}"
        + ("" if "kernel" in backends else " (this run did not touch a real kernel)"),
        f"- Never ran on a real kernel: {model_only} of {len(outcomes)} cases "
        "(`verified_on: []`, checked against the reference model only, not yet conformance)",
    ]
    return lines


def area_tables(outcomes: list[CaseOutcome]) -> list[str]:
    lines = ["", "## Results by area"]
    for area, group in by_area(outcomes):
        c = counts(group)
        summary = ", ".join(f"{n} {s}" for s, n in c.items() if n)
        lines += ["", f"### {area} ({len(group)} case{'' if len(group) == 1 else 's'}: {summary})", ""]
        lines += table(["case", "status", "verified on", "location", "note"],
                       [[code(o.test_id), STATUS_TEXT.get(o.status, cell(o.status)), cell(verified(o)),
                         code(o.location), _note(o)] for o in group])
    return lines


def steps_table(o: CaseOutcome) -> list[str]:
    """#, line, step, one column per backend, the divergence marker, and the model's kernel citation."""
    if not o.steps:
        return ["_No steps ran._"]
    cols = row_backends(o)
    rows = []
    for s in o.steps:
        per_backend = []
        for b in cols:
            text = code(s.outcomes[b]) if b in s.outcomes else "—"
            text += "".join(f"<br>✗ {cell(f)}" for f in s.failures.get(b, []))
            per_backend.append(text)
        rows.append([str(s.index + 1), str(s.line), code(s.label), *per_backend, marker(s), code(s.where)])
    return [*table(["#", "line", "step", *(cell(b) for b in cols), "", "where"], rows), "",
            "≠ the backends diverge at this step; ✗ an expectation was not met; "
            "_where_ is the kernel line the model followed."]


def detail(o: CaseOutcome) -> list[str]:
    lines = ["", f"### {code(o.test_id)}: {STATUS_TEXT.get(o.status, cell(o.status))}", ""]
    lines.append(f"- purpose: {cell(o.purpose)}")
    lines.append(f"- location: {code(o.location)}")
    lines.append(f"- source: {code(o.source) or '—'}")
    lines.append(f"- verified on: {cell(verified(o))}; backends: {cell(', '.join(o.backends)) or '—'}")
    if o.reason:
        lines.append(f"- reason: {cell(o.reason)}")
    if o.divergence:
        lines.append(f"- first divergence: {cell(o.divergence)}")
    if o.known_difference:
        lines.append(f"- accepted as a documented known difference: {cell(o.known_difference)}")
    lines.append("")
    lines += steps_table(o)
    return lines


def _failing_or_diverging(o: CaseOutcome) -> bool:
    """Failed or errored, or diverged without a documented reason."""
    return o.status in ("fail", "error") or (bool(o.divergence) and not is_accepted(o))


def details(outcomes: list[CaseOutcome]) -> list[str]:
    chosen = [o for _, group in by_area(outcomes) for o in group if _failing_or_diverging(o)]
    lines = ["", "## Failures and divergences"]
    if not chosen:
        return [*lines, "", "None."]
    for o in chosen:
        lines += detail(o)
    return lines


def known_differences(outcomes: list[CaseOutcome]) -> list[str]:
    chosen = [o for _, group in by_area(outcomes) for o in group if is_accepted(o)]
    lines = ["", "## Accepted known differences", "",
             "Divergences the case documents under `known_differences:` for this kernel; "
             "they do not fail the case."]
    if not chosen:
        return [*lines, "", "None."]
    rows = [[code(o.test_id), STATUS_TEXT.get(o.status, cell(o.status)), cell(o.divergence),
             cell(o.known_difference), code(o.location)] for o in chosen]
    lines += ["", *table(["case", "status", "first divergence", "documented reason", "location"], rows)]
    for o in chosen:
        if not _failing_or_diverging(o):  # else its section is under "Failures and divergences"
            lines += detail(o)
    return lines


def banner(outcomes: list[CaseOutcome], state: RunState | None) -> list[str]:
    """The first thing a reader sees when the run did not finish: what stopped it, and how much
    of the report is real results."""
    if state is None or not state.stopped_early:
        return []
    missing = sum(1 for o in outcomes if is_not_run(o))
    title = {"interrupted": "INTERRUPTED", "refused": "REFUSED TO RUN", "crashed": "CRASHED"}.get(state.how, "STOPPED")
    lines = ["", f"> **{title}: {cell(state.headline(reported(outcomes)))}.**"]
    if state.reason and state.how != "refused":
        lines.append(f"> {cell(state.reason)}")
    lines.append(f"> This report is incomplete: {missing} of {len(outcomes)} cases did not run "
                 "(listed as skipped, \"not run\").")
    return lines


def render_markdown(outcomes: list[CaseOutcome], state: RunState | None = None) -> str:
    head = header(outcomes)
    head[1:1] = banner(outcomes, state)
    return "\n".join(head + area_tables(outcomes) + details(outcomes)
                     + known_differences(outcomes)) + "\n"
