"""Every case under cases/, one test each, on the backend chosen with --backend."""

from typing import Any

import pytest

from harness.cases.case import Case, CaseError
from harness.pytest_plugin import run_one


def test_case(case: Case | CaseError, conformance_backends: Any, request: pytest.FixtureRequest) -> None:
    run_one(case, conformance_backends, request.node)
