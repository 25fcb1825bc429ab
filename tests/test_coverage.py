"""The coverage matrix: classification of case steps, the kernel-source errno scan, the CLI."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from harness.cases.loader import Loader
from harness.cli import main
from harness.coverage.kernel_errnos import KernelIndex, handler_errnos, parse_functions
from harness.coverage.matrix import build
from harness.coverage.render import gaps, markdown, text

CASES = Path(__file__).resolve().parent.parent / "cases"


def _cases(tmp_path: Path, **files: str):  # type: ignore[no-untyped-def]
    for name, body in files.items():
        p = tmp_path / "ioas" / f"{name}.yaml"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(HEAD).format(name=name) + textwrap.indent(textwrap.dedent(body), "  "))
    cases, errors = Loader(tmp_path).load_all("**/*.yaml")
    assert not errors, errors
    return cases


HEAD = """\
    id: ioas-{name}
    area: ioas
    purpose: x
    verified_on: []
    steps:
      - open: /dev/iommu
        as: iommufd
      - ioctl: IOMMU_IOAS_ALLOC
        fd: iommufd
        save: {{ioas: out_ioas_id}}
"""


def test_steps_are_classified_by_what_they_send_and_expect(tmp_path: Path) -> None:
    cases = _cases(
        tmp_path,
        short="""\
          - ioctl: IOMMU_IOAS_MAP
            fd: iommufd
            args: {size: minsz(IOMMU_IOAS_MAP) - 1}
            expect: EINVAL
    """,
        tail="""\
          - ioctl: IOMMU_IOAS_UNMAP
            fd: iommufd
            args: {ioas_id: $ioas}
            tail: {hex: "0100000000000000"}
            expect: E2BIG
    """,
        flags="""\
          - ioctl: IOMMU_IOAS_MAP
            fd: iommufd
            args: {ioas_id: $ioas, flags: [IOMMU_IOAS_MAP_READABLE, 0x100], __reserved: 0}
            expect: EOPNOTSUPP
    """,
        ids="""\
          - ioctl: IOMMU_IOAS_UNMAP
            fd: iommufd
            args: {ioas_id: $ioas + 1000}
            expect: ENOENT
          - ioctl: IOMMU_HWPT_SET_DIRTY_TRACKING
            fd: iommufd
            args: {hwpt_id: $ioas}
            expect: ENOENT
          - ioctl: IOMMU_DESTROY
            fd: iommufd
            args: {id: $ioas}
    """,
    )
    m = build(cases)
    r = m.rows
    assert r["IOMMU_IOAS_MAP"].cells["size<min"] == {"ioas-short"}
    assert r["IOMMU_IOAS_MAP"].cells["flags"] == {"ioas-flags"}
    assert not r["IOMMU_IOAS_MAP"].cells["reserved"]          # __reserved: 0 is no reserved check
    assert r["IOMMU_IOAS_UNMAP"].cells["tail!=0"] == {"ioas-tail"}
    assert r["IOMMU_IOAS_UNMAP"].cells["bad id"] == {"ioas-ids"}
    assert r["IOMMU_HWPT_SET_DIRTY_TRACKING"].cells["wrong type"] == {"ioas-ids"}
    assert r["IOMMU_DESTROY"].cells["happy"] == {"ioas-ids"}
    assert not r["IOMMU_DESTROY"].cells["wrong type"]        # IOMMU_DESTROY takes any object
    assert r["IOMMU_IOAS_UNMAP"].errnos == {"E2BIG": {"ioas-tail"}, "ENOENT": {"ioas-ids"}}
    # The fixture-like setup steps (IOAS_ALLOC) count too, as the case's own steps.
    assert len(r["IOMMU_IOAS_ALLOC"].cells["happy"]) == 4
    assert r["IOMMU_IOAS_MAP"].count("happy") == 0


def test_rows_cover_every_ioctl_and_sub_command_and_mark_what_cannot_run() -> None:
    m = build([])
    assert "VFIO_DEVICE_FEATURE(PCI_VF_TOKEN)" in m.rows and "IOMMU_TEST_CMD(ACCESS_RW)" in m.rows
    assert m.rows["VFIO_IOMMU_SPAPR_TCE_CREATE"].not_applicable
    assert m.rows["IOMMU_IOAS_MAP"].count("reserved") == 0
    assert m.rows["VFIO_CHECK_EXTENSION"].count("size<min") is None   # takes a value, no struct
    assert "happy path" in gaps(m.rows["IOMMU_IOAS_MAP"]) and "tail!=0" in gaps(m.rows["IOMMU_IOAS_MAP"])
    assert gaps(m.rows["VFIO_EEH_PE_OP"]) == []
    assert "negative case" not in gaps(m.rows["VFIO_GET_API_VERSION"])


C_SOURCE = """\
static int helper(int x)
{
\tif (x)
\t\treturn -ENOENT;
\treturn 0;
}

long
my_handler(struct foo *f,
\t   unsigned long arg)
{
\tif (arg)
\t\treturn -EINVAL;
\treturn helper(arg) ?: -ENOIOCTLCMD;
}
"""


def test_the_errno_scan_follows_calls_and_names_lines() -> None:
    funcs = parse_functions("drivers/x/y.c", C_SOURCE)
    assert [f.name for f in funcs] == ["helper", "my_handler"]
    handler = funcs[1]
    assert (handler.start, handler.errnos["EINVAL"]) == (9, 13)  # the name's line
    idx = KernelIndex(funcs)
    assert idx.at("y.c", 9) is handler
    assert idx.errnos(handler, depth=0) == {"EINVAL": "drivers/x/y.c:13", "ENOTTY": "drivers/x/y.c:14"}
    assert idx.errnos(handler, depth=1)["ENOENT"] == "drivers/x/y.c:4"
    assert handler_errnos(idx, "y.c:9", ()) == idx.errnos(handler)
    assert handler_errnos(idx, "nowhere.c:1", ()) is None


def test_the_corpus_fills_every_iommufd_size_flags_and_reserved_column() -> None:
    cases, errors = Loader(CASES).load_all("**/*.yaml")
    assert not errors
    m = build(cases)
    holes = {r.name: gaps(r) for r in m.rows.values() if r.name.startswith("IOMMU_") and "(" not in r.name}
    assert all(not g for g in holes.values()), holes


def test_coverage_command_writes_markdown_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["coverage", "--cases", "size/*.yaml", "--report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "IOMMU_IOAS_MAP" in out and "applicable rows with a happy-path" in out
    data = json.loads((tmp_path / "coverage.json").read_text())
    assert data["rows"]["IOMMU_IOAS_MAP"]["columns"]["size<min"]
    assert "| `IOMMU_IOAS_MAP` |" in (tmp_path / "coverage.md").read_text()


def test_text_and_markdown_render_every_row() -> None:
    m = build([])
    assert all(name in text(m) for name in m.rows)
    assert all(f"`{name}`" in markdown(m) for name in m.rows)
