"""Where the corpus and the pytest suite that runs it are: the checkout's, or an install's copies.

In a checkout (and an editable install of one) ``cases/`` and ``conformance/`` sit beside
``harness/``.  A wheel or sdist install ships them, with the top-level ``conftest.py``, under
``harness/_data/`` (setup.py copies them there at build time), together with a ``pytest.ini``
that makes that folder pytest's rootdir and inifile whatever the user's current directory holds.
"""

from __future__ import annotations

from pathlib import Path

HARNESS = Path(__file__).resolve().parent
# The folder that holds the harness package: a checkout, or site-packages.  The guest's
# PYTHONPATH, and what it must be able to reach (harness/vm).
CODE_ROOT = HARNESS.parent
# Where setup.py's build step puts the corpus and the suite in an installed package.
DATA_DIR = HARNESS / "_data"


def _is_project(root: Path) -> bool:
    return (root / "cases").is_dir() and (root / "conformance" / "test_cases.py").is_file()


def project_root() -> Path:
    """The folder holding ``cases/`` and ``conformance/``: the checkout, else the installed data.

    Raises FileNotFoundError (naming both places) when neither has them: an install built
    without the data."""
    for root in (CODE_ROOT, DATA_DIR):
        if _is_project(root):
            return root
    raise FileNotFoundError(f"no cases/ and conformance/ beside {HARNESS} nor in {DATA_DIR}: "
                            "reinstall vfio-conformance from a wheel or sdist built by its setup.py")


def in_checkout() -> bool:
    return _is_project(CODE_ROOT)


def cases_dir() -> Path:
    """The bundled corpus."""
    return project_root() / "cases"


def conformance_suite() -> Path:
    """The pytest file that turns each case into a test."""
    return project_root() / "conformance" / "test_cases.py"


def pytest_ini() -> Path | None:
    """The inifile to give pytest for the suite: None in a checkout (its pyproject.toml is
    found from the suite's path), the shipped pytest.ini in an install (so that no pytest.ini,
    tox.ini or pyproject.toml above site-packages, e.g. of the project a .venv is in, applies)."""
    root = project_root()
    ini = root / "pytest.ini"
    return ini if root == DATA_DIR and ini.is_file() else None


def suite_argv() -> list[str]:
    """pytest's arguments that run the bundled suite from any current directory: the suite's
    file, its rootdir and (in an install) its inifile."""
    root = project_root()
    ini = pytest_ini()
    return [str(conformance_suite()), "--rootdir", str(root), *(["-c", str(ini)] if ini else [])]


def regressions_dir() -> Path:
    """Where the fuzzer writes the regression cases it shrinks, unless told: the checkout's
    ``cases/regressions`` (they join the corpus), else ``reports/regressions`` of the current
    directory (an installed package is no place to write to)."""
    return CODE_ROOT / "cases" / "regressions" if in_checkout() else Path("reports") / "regressions"
