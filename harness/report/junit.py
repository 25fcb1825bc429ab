"""The results as JUnit XML: one <testsuite> per area, one <testcase> per case.

Built with junit-xml (PyPI `junit-xml`), then trimmed to what the Jenkins xUnit plugin's JUnit
schema allows (tests/schemas/junit.xsd holds those rules): no `disabled` counts, no `file` or
`line` on a testcase, no <properties> inside one.  What those would carry (the case file and
line, the kernel source, verified_on, backends, an accepted known difference) is the
testcase's <system-out>; a failure's body has the step-by-step diff.

A run that stopped early (interrupted, refused, crashed) gets one more suite,
`vfio-conformance.run`, whose one testcase is an error saying what stopped it; the cases it
never reached are skipped testcases, "not run: ...".
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from junit_xml import TestCase, TestSuite, to_xml_report_string

from ..runner.outcome import CaseOutcome
from ..runner.run_state import RunState, reported
from .common import MODEL_ONLY, by_area, case_text, failure_message, one_line, xml_safe

SUITE_PREFIX = "vfio-conformance"
RUN_SUITE = f"{SUITE_PREFIX}.run"
# junit-xml writes these; the Jenkins xUnit schema has no such attributes.
_NOT_IN_SCHEMA = ("disabled", "file", "line")


def suite_name(area: str) -> str:
    return f"{SUITE_PREFIX}.{area}"


def case_properties(o: CaseOutcome) -> dict[str, str]:
    props = {
        "location": o.location,
        "backends": ",".join(o.backends),
        "verified_on": ",".join(o.verified_on) or MODEL_ONLY,
        "source": o.source,
    }
    if o.known_difference:
        props["known_difference"] = one_line(o.known_difference)
    if o.divergence:
        props["divergence"] = one_line(o.divergence)
    return props


def _properties_text(o: CaseOutcome) -> str:
    return "\n".join(f"{k}: {v}" for k, v in case_properties(o).items())


def _testcase(o: CaseOutcome, classname: str) -> TestCase:
    tc = TestCase(o.test_id, classname=classname, elapsed_sec=o.duration_s, stdout=_properties_text(o))
    if o.status == "fail":
        tc.add_failure_info(message=failure_message(o), output=case_text(o),
                            failure_type="divergence" if o.divergence else "failure")
    elif o.status == "error":
        tc.add_error_info(message=failure_message(o), output=case_text(o), error_type="error")
    elif o.status == "skip":
        tc.add_skipped_info(message=one_line(o.reason) or "skipped")
    elif o.divergence:
        # Passed with a documented divergence: keep the evidence next to the result.
        tc.stdout = _properties_text(o) + "\n\n" + case_text(o)
    return tc


def _run_suite(outcomes: list[CaseOutcome], state: RunState) -> TestSuite:
    headline = state.headline(reported(outcomes))
    tc = TestCase("run", classname=RUN_SUITE, stderr=f"vfio-conformance: {headline}")
    tc.add_error_info(message=headline, output=state.reason or headline, error_type=state.how)
    return TestSuite(RUN_SUITE, [tc])


def _trim(el: ET.Element) -> None:
    for name in _NOT_IN_SCHEMA:
        el.attrib.pop(name, None)
    for child in el:
        _trim(child)


def render_junit(outcomes: list[CaseOutcome], state: RunState | None = None) -> str:
    suites = [TestSuite(suite_name(area), [_testcase(o, suite_name(area)) for o in group])
              for area, group in by_area(outcomes)]
    if state is not None and state.stopped_early:
        suites.append(_run_suite(outcomes, state))
    root = ET.fromstring(xml_safe(to_xml_report_string(suites, prettyprint=False)))
    _trim(root)
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
