"""A malformed restore state file is one line saying why, from `restore` and from the store
that claims it, never a traceback (issue 10, item 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.backends.sysfs_state import StateFileError, load_state
from harness.exitcodes import ENVIRONMENT

PROJECT = Path(__file__).resolve().parent.parent

MALFORMED: dict[str, bytes] = {
    "list": b"[1, 2]",
    "string": b'"x"',
    "null": b"null",
    "truncated": b"{",
    "not-utf8": b"\xff\xfe",
    "no-root": b'{"version": 1}',
    "wrong-version": b'{"version": "1", "sysfs_root": "/sys"}',
    "functions-list": b'{"version": 1, "sysfs_root": "/sys", "functions": [1]}',
    "record-unknown-field": b'{"version": 1, "sysfs_root": "/sys", "functions": {"a": {"x": 1}}}',
    "record-missing-field": b'{"version": 1, "sysfs_root": "/sys", "functions": {"a": {"bdf": "a"}}}',
    "record-wrong-type": (b'{"version": 1, "sysfs_root": "/sys", "functions": {"a": {"bdf": 1, "driver": null, '
                          b'"driver_override": null, "sriov_numvfs": null, "reset_method": null}}}'),
    "root-number": b'{"version": 1, "sysfs_root": 5}',
    "pid-text": b'{"version": 1, "sysfs_root": "/sys", "owner_pid": "me"}',
    "deep": b"[" * 100_000 + b"]" * 100_000,
    "huge": b'{"version": 1, "sysfs_root": "' + b"x" * (2 << 20) + b'"}',
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_state_file_is_a_state_file_error(tmp_path: Path, name: str) -> None:
    p = tmp_path / "state.json"
    p.write_bytes(MALFORMED[name])
    with pytest.raises(StateFileError) as e:
        load_state(p)
    assert "\n" not in str(e.value)


def test_restore_names_the_file_and_the_reason_in_one_line(tmp_path: Path) -> None:
    p = tmp_path / "state.json"
    p.write_bytes(MALFORMED["list"])
    r = subprocess.run([sys.executable, "-m", "harness", "restore", "--state-file", str(p)],
                       cwd=PROJECT, capture_output=True, text=True, timeout=60)
    assert r.returncode == ENVIRONMENT   # the PCI state could not be put back
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        f"vfio-conformance: could not restore: {p}: unreadable state file (a JSON array, expected an object)"]
    assert p.exists()  # an unreadable record is left for a person to look at
