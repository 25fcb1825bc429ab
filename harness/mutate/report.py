"""The reports of a mutation run: mutate.md, mutate.json, mutate.xml (JUnit) and mutate.ktap.

JUnit and KTAP go through harness/report's renderers, one test per mutant (its area the
operator): a killed or timed-out mutant passes, a survivor fails with its diff, a mutant that
did not compile, is equivalent or compiled to the original's code is skipped with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..report import render_junit, render_ktap, write_atomic
from ..runner.outcome import CaseOutcome
from ..runner.run_state import RunState
from ..runner.trace import FAIL, PASS, SKIP
from .results import EQUIVALENT, IDENTICAL, KILLED, NOT_COMPILED, SURVIVED, TIMED_OUT, VERDICTS, Result, Tally, tally

STEM = "mutate"


def outcome(r: Result) -> CaseOutcome:
    status = {KILLED: PASS, TIMED_OUT: PASS, SURVIVED: FAIL}.get(r.verdict, SKIP)
    if r.verdict == SURVIVED:
        reason = f"survived {r.cases_run} cases: {r.file}:{r.line}\n{r.diff}"
    elif r.verdict in (KILLED, TIMED_OUT):
        reason = f"{r.verdict} by {r.by}"
    else:
        reason = f"{r.verdict}: {r.by}"
    return CaseOutcome(test_id=f"{r.name} {r.id}", area=r.operator, purpose=f"{r.operator} in {r.function}()",
                       location=f"{r.file}:{r.line}", source="", verified_on=[], status=status, reason=reason,
                       backends=["kernel", "model"], duration_s=r.build_s + r.run_s)


def _table(title: str, groups: dict[str, Tally]) -> list[str]:
    out = [f"| {title} | " + " | ".join(VERDICTS) + " | of them unreached | score | reached score |",
           "|---" * (len(VERDICTS) + 4) + "|"]
    for name, t in sorted(groups.items()):
        out.append(f"| {name} | " + " | ".join(str(t.counts[v]) for v in VERDICTS)
                   + f" | {t.unreached} | {t.score_text()} | {t.reached_score_text()} |")
    return out


def markdown(results: list[Result], header: dict[str, str]) -> str:
    t = tally(results).get("all", Tally())
    lines = ["# Mutation testing of the uAPI handlers", ""]
    lines += [f"- {k}: {v}" for k, v in header.items()]
    lines += [f"- mutants: {t.total}; " + ", ".join(f"{v} {t.counts[v]}" for v in VERDICTS),
              f"- **score: {t.score_text()}** (killed + timed out) / "
              "(total - not compiled - equivalent - identical code)",
              f"- reached score: {t.reached_score_text()}, leaving out the {t.unreached} survivors no case reached "
              "(coverage gaps: `vm --coverage` shows their lines)", ""]
    lines += ["## Per operator", "", *_table("operator", tally(results, "operator")), ""]
    lines += ["## Per file", "", *_table("file", tally(results, "file")), ""]
    survivors = [r for r in results if r.verdict == SURVIVED and not r.unreached]
    lines += [f"## Survivors a case reached ({len(survivors)})", ""]
    for r in survivors:
        lines += [f"### {r.file}:{r.line} {r.operator} in {r.function}() `{r.id}`", "",
                  f"Survived {r.cases_run} cases.", "", "```diff", r.diff.rstrip("\n"), "```", ""]
    lines += _unreached(results)
    for verdict in (EQUIVALENT, IDENTICAL, NOT_COMPILED):
        some = [r for r in results if r.verdict == verdict]
        if some:
            lines += [f"## {verdict.capitalize()} ({len(some)})", ""]
            lines += [f"- {r.file}:{r.line} {r.operator} `{r.id}`: {r.by.splitlines()[0] if r.by else ''}"
                      for r in some] + [""]
    killed = [r for r in results if r.verdict in (KILLED, TIMED_OUT)]
    if killed:
        lines += [f"## Killed ({len(killed)})", "", "| mutant | id | by |", "|---|---|---|"]
        lines += [f"| {r.name} | `{r.id}` | {r.verdict}: {r.by} |" for r in killed] + [""]
    return "\n".join(lines)


def _unreached(results: list[Result]) -> list[str]:
    """The survivors no case reached, one line each under their function: the lines to cover."""
    by_function: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        if r.unreached:
            by_function.setdefault((r.file, r.function), []).append(r)
    if not by_function:
        return []
    out = [f"## Survivors no case reached ({sum(map(len, by_function.values()))}), by function", ""]
    for (file, function), rs in sorted(by_function.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        out.append(f"- {file} {function}() ({len(rs)}): " + ", ".join(f"{r.line} {r.operator} `{r.id}`" for r in rs))
    return [*out, ""]


def to_json(results: list[Result], header: dict[str, str]) -> str:
    t = tally(results).get("all", Tally())
    return json.dumps({
        "run": header, "counts": t.counts, "score": t.score, "scored": t.scored,
        "unreached_survivors": t.unreached, "reached_score": t.reached_score,
        "per_operator": {k: v.counts for k, v in tally(results, "operator").items()},
        "per_file": {k: v.counts for k, v in tally(results, "file").items()},
        "mutants": [r.to_json() for r in results],
    }, indent=1, sort_keys=True) + "\n"


def write(results: list[Result], folder: Path, header: dict[str, str], state: RunState | None = None) -> list[Path]:
    """Render all four reports, then write them into ``folder``."""
    outcomes = [outcome(r) for r in results]
    texts = {f"{STEM}.md": markdown(results, header), f"{STEM}.json": to_json(results, header),
             f"{STEM}.xml": render_junit(outcomes, state), f"{STEM}.ktap": render_ktap(outcomes, state)}
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        write_atomic(folder / name, text)
    return [folder / n for n in texts]
