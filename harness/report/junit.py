"""The diff report as JUnit XML: one <testsuite> per area, one <testcase> per case.

Built with junit-xml (PyPI `junit-xml`).  That library has no per-testcase
properties, so they are added to its output afterwards: each <testcase> gets
<properties> with backends, verified_on ("model only" when empty), source and,
when there is one, the accepted known difference.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from junit_xml import TestCase, TestSuite, to_xml_report_string

from ..runner.outcome import CaseOutcome
from .common import MODEL_ONLY, by_area, case_text, failure_message, one_line, split_location, xml_safe

SUITE_PREFIX = "vfio-conformance"


def suite_name(area: str) -> str:
    return f"{SUITE_PREFIX}.{area}"


def case_properties(o: CaseOutcome) -> dict[str, str]:
    props = {
        "backends": ",".join(o.backends),
        "verified_on": ",".join(o.verified_on) or MODEL_ONLY,
        "source": o.source,
    }
    if o.known_difference:
        props["known_difference"] = one_line(o.known_difference)
    if o.divergence:
        props["divergence"] = one_line(o.divergence)
    return props


def _testcase(o: CaseOutcome, classname: str) -> TestCase:
    path, line = split_location(o.location)
    tc = TestCase(o.test_id, classname=classname, elapsed_sec=o.duration_s, file=path, line=line)
    if o.status == "fail":
        tc.add_failure_info(message=failure_message(o), output=case_text(o),
                            failure_type="divergence" if o.divergence else "failure")
    elif o.status == "error":
        tc.add_error_info(message=failure_message(o), output=case_text(o), error_type="error")
    elif o.status == "skip":
        tc.add_skipped_info(message=one_line(o.reason) or "skipped")
    elif o.divergence:
        # Passed with a documented divergence: keep the evidence next to the result.
        tc.stdout = case_text(o)
    return tc


def render_junit(outcomes: list[CaseOutcome]) -> str:
    suites = []
    for area, group in by_area(outcomes):
        name = suite_name(area)
        suites.append((group, TestSuite(name, [_testcase(o, name) for o in group])))
    raw = to_xml_report_string([s for _, s in suites], prettyprint=False)
    root = ET.fromstring(raw)
    for (group, _), suite_el in zip(suites, root.findall("testsuite"), strict=True):
        for o, case_el in zip(group, suite_el.findall("testcase"), strict=True):
            props = ET.Element("properties")
            for k, v in case_properties(o).items():
                ET.SubElement(props, "property", {"name": k, "value": xml_safe(v)})
            case_el.insert(0, props)
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
