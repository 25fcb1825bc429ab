"""The results as KTAP version 1 (Documentation/dev-tools/ktap.rst), for kselftest tooling.

One top-level test per area, each a nested KTAP document (indented two spaces,
its own version line, `# Subtest:` header as KUnit writes it, and plan) with one
result line per case:

    KTAP version 1
    1..2
      KTAP version 1
      # Subtest: ioas
      1..2
      ok 1 ioas-map-basic
      # cases/ioas/map-unaligned-iova.yaml:1: ...
      not ok 2 ioas-map-fixed
    not ok 1 ioas
    ...
    # Totals: pass:1 fail:1 xfail:0 xpass:0 skip:0 error:0

A failed case is `not ok`, its reason and step table as `#` diagnostic lines
just before it; a skipped case is `ok N name # SKIP reason`; an error is
`not ok N name # ERROR reason`.  An area fails if any of its cases failed or
errored, and is skipped if all were.  Test names never carry '#' or a newline.

A run that stopped early (interrupted, refused, crashed) keeps its plan honest: the cases it
never reached are `ok N name # SKIP not run: interrupted`, one more top-level test `run` fails
with the reason (so a parser that counts results sees the failure), and `Bail out! <reason>`
comes before the totals, as kselftest's ksft_exit_fail_msg() prints it.
"""

from __future__ import annotations

import re

from ..runner.outcome import CaseOutcome
from ..runner.run_state import RunState, reported
from .common import by_area, case_text, counts, failure_message, one_line

INDENT = "  "


def ktap_name(name: str) -> str:
    """A KTAP description: any characters but '#' and newline (ktap.rst)."""
    cleaned = one_line(re.sub(r"#", "_", name))
    return cleaned or "unnamed"


def _diag(text: str, indent: str) -> list[str]:
    return [f"{indent}# {line}".rstrip() for line in text.splitlines()]


def _case_lines(n: int, o: CaseOutcome, indent: str) -> list[str]:
    name = ktap_name(o.test_id)
    if o.status == "pass":
        lines = []
        if o.divergence:
            lines.append(f"{indent}# accepted known difference: {one_line(o.known_difference or '-')}")
            lines.append(f"{indent}# divergence: {one_line(o.divergence)}")
        return [*lines, f"{indent}ok {n} {name}"]
    if o.status == "skip":
        reason = one_line(o.reason)
        return [f"{indent}ok {n} {name} # SKIP" + (f" {reason}" if reason else "")]
    lines = _diag(case_text(o), indent)
    if o.status == "error":
        return [*lines, f"{indent}not ok {n} {name} # ERROR {failure_message(o)}"]
    return [*lines, f"{indent}not ok {n} {name}"]


def render_ktap(outcomes: list[CaseOutcome], state: RunState | None = None) -> str:
    areas = by_area(outcomes)
    stopped = state is not None and state.stopped_early
    lines = ["KTAP version 1", f"1..{len(areas) + stopped}"]
    for n, (area, group) in enumerate(areas, 1):
        name = ktap_name(area)
        lines += [f"{INDENT}KTAP version 1", f"{INDENT}# Subtest: {name}", f"{INDENT}1..{len(group)}"]
        for i, o in enumerate(group, 1):
            lines += _case_lines(i, o, INDENT)
        c = counts(group)
        if c["fail"] or c["error"]:
            lines.append(f"# {name}: {c['fail']} failed, {c['error']} errored, of {len(group)}")
            lines.append(f"not ok {n} {name}")
        elif c["skip"] == len(group):
            lines.append(f"ok {n} {name} # SKIP all {len(group)} cases skipped")
        else:
            lines.append(f"ok {n} {name}")
    headline = ""
    if state is not None and stopped:
        headline = one_line(state.headline(reported(outcomes)))
        lines.append(f"not ok {len(areas) + 1} run # ERROR {ktap_name(headline)}")
        lines.append(f"Bail out! {headline}")
    c = counts(outcomes)
    lines.append(f"# Totals: pass:{c['pass']} fail:{c['fail']} xfail:0 xpass:0 skip:{c['skip']} error:{c['error']}")
    return "\n".join(lines) + "\n"
