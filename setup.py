"""The corpus and the suite that runs it ship inside the package (harness/resources.py).

The repository keeps ``cases/``, ``conformance/`` and ``conftest.py`` at the top (the design's
layout); a wheel carries copies of them under ``harness/_data/``, with a ``pytest.ini`` that makes
that folder the suite's rootdir and inifile.  An editable install needs no copy: the checkout
is beside ``harness/``.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SHIPPED = ("cases", "conformance", "conftest.py")
PYTEST_INI = "# The installed suite's own settings: no pytest.ini or pyproject.toml above site-packages applies.\n" \
             "[pytest]\naddopts = -p no:cacheprovider\n"


class BuildWithCorpus(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        data = Path(self.build_lib) / "harness" / "_data"
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        for name in SHIPPED:
            src = HERE / name
            if src.is_dir():
                shutil.copytree(src, data / name, ignore=ignore)
            else:
                shutil.copy2(src, data / name)
        (data / "pytest.ini").write_text(PYTEST_INI)


setup(cmdclass={"build_py": BuildWithCorpus})
