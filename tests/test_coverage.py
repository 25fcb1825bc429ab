"""The coverage matrix: classification of case steps, the kernel-source errno scan, the CLI."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from harness import uapi
from harness.cases.loader import Loader
from harness.cli import main
from harness.coverage import build_for
from harness.coverage.kernel_errnos import KernelIndex, handler_errnos, parse_functions, sources
from harness.coverage.matrix import applies, build
from harness.coverage.render import gaps, markdown, summary, text
from harness.exitcodes import USAGE_ERROR
from harness.kernel.source import find_source
from tests.kernel_source import unavailable

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


def _corpus():  # type: ignore[no-untyped-def]
    cases, errors = Loader(CASES).load_all("**/*.yaml")
    assert not errors
    return cases


@pytest.mark.parametrize("series", uapi.SERIES)
def test_the_corpus_fills_every_iommufd_size_flags_and_reserved_column(series: str) -> None:
    # On every series, for the iommufd ioctls every series has; the 7.2-only ones are issue 9's
    # open cases (the 7.2 matrix lists them under "gaps").
    m = build(_corpus(), series)
    holes = {r.name: gaps(r) for r in m.rows.values() if r.name.startswith("IOMMU_") and "(" not in r.name
             and uapi.span(r.name) == uapi.Span()}
    assert len(holes) == 16 and all(not g for g in holes.values()), holes


SEVEN_TWO_ONLY = {"IOMMU_VIOMMU_ALLOC", "IOMMU_VDEVICE_ALLOC", "IOMMU_VEVENTQ_ALLOC", "IOMMU_HW_QUEUE_ALLOC",
                  "IOMMU_IOAS_MAP_FILE", "IOMMU_IOAS_CHANGE_PROCESS",
                  "VFIO_DEVICE_FEATURE(DMA_BUF)", "VFIO_DEVICE_FEATURE(MIG_PRECOPY_INFOv2)",
                  "IOMMU_TEST_CMD(PASID_ATTACH)", "IOMMU_TEST_CMD(TRIGGER_VEVENT)", "IOMMU_TEST_CMD(DMABUF_GET)"}


def test_each_series_has_the_rows_of_its_own_uapi() -> None:
    m612, m72 = build([], "6.12"), build([], uapi.for_series("7.2"))   # a series, or its view
    assert set(m72.rows) >= SEVEN_TWO_ONLY and not SEVEN_TWO_ONLY & set(m612.rows)
    for m in (m612, m72):
        # Every row is an ioctl, feature or selftest op the series has: none for what it lacks.
        for name in m.rows:
            ioctl, _, sub = name.partition("(")
            prefix = {"VFIO_DEVICE_FEATURE": "VFIO_DEVICE_FEATURE_", "IOMMU_TEST_CMD": "IOMMU_TEST_OP_"}
            assert uapi.available(prefix[ioctl] + sub[:-1] if sub else ioctl, m.series), (m.series, name)
        assert m.ioctls == len(uapi.for_series(m.series).IOCTLS)
    assert m72.rows["IOMMU_VEVENTQ_ALLOC"].count("reserved") == 0     # its struct has __reserved
    with pytest.raises(ValueError, match="per kernel series"):
        build([], uapi.every_series())


def test_sizes_are_the_series_own(tmp_path: Path) -> None:
    # vfio_device_bind_iommufd grew from 16 to 24 bytes in 7.2 (token_uuid_ptr): argsz 24 is past
    # the 6.12 struct (a zero tail) and the whole 7.2 struct; sizeof() in a case is the series'.
    cases = _cases(tmp_path, bind="""\
          - ioctl: VFIO_DEVICE_BIND_IOMMUFD
            fd: iommufd
            args: {argsz: 24, iommufd: $iommufd}
          - ioctl: VFIO_DEVICE_BIND_IOMMUFD
            fd: iommufd
            args: {argsz: sizeof(vfio_device_bind_iommufd) + 8, iommufd: $iommufd}
            tail: {hex: "0100000000000000"}
            expect: E2BIG
    """)
    r612, r72 = (build(cases, s).rows["VFIO_DEVICE_BIND_IOMMUFD"] for s in ("6.12", "7.2"))
    assert r612.cells["tail=0"] == {"ioas-bind"} and not r72.cells["tail=0"]
    assert r612.cells["tail!=0"] == r72.cells["tail!=0"] == {"ioas-bind"}


def test_a_case_counts_on_the_series_it_applies_to() -> None:
    cases = _corpus()
    # Names only 7.2 has (vfio_device_detach_iommufd_pt.pasid): the runner skips it on 6.12.
    pasid = next(c for c in cases if c.id == "device-detach-pt-pasid-not-attached-ok")
    assert not applies(pasid, "6.12") and applies(pasid, "7.2")
    m612, m72 = build(cases, "6.12"), build(cases, "7.2")
    assert pasid.test_id in m72.rows["VFIO_DEVICE_DETACH_IOMMUFD_PT"].cells["happy"]
    assert pasid.test_id not in m612.rows["VFIO_DEVICE_DETACH_IOMMUFD_PT"].cells["happy"]
    assert m612.cases + m612.skipped == m72.cases + m72.skipped == len(cases)
    assert m612.skipped >= 5 and m72.cases == len(cases) - m72.skipped


def test_requires_kernel_picks_the_series(tmp_path: Path) -> None:
    (tmp_path / "ioas").mkdir()
    for name, kernel in (("new", ">=7.2"), ("old", "<7.2"), ("lts", "6.12")):
        (tmp_path / "ioas" / f"{name}.yaml").write_text(
            textwrap.dedent(HEAD).format(name=name) + f"requires: {{kernel: \"{kernel}\"}}\n")
    cases, errors = Loader(tmp_path).load_all("**/*.yaml")
    assert not errors, errors
    assert build(cases, "7.2").rows["IOMMU_IOAS_ALLOC"].cells["happy"] == {"ioas-new"}
    assert build(cases, "6.12").rows["IOMMU_IOAS_ALLOC"].cells["happy"] == {"ioas-old", "ioas-lts"}


def test_a_per_kernel_expectation_counts_what_holds_on_the_series() -> None:
    cases = [c for c in _corpus() if c.id in ("mock-hwpt-alloc-pasid", "container-map-iova-overflow")]
    assert len(cases) == 3     # hwpt-alloc-pasid, map-iova-overflow[legacy], [iommufd-compat]
    m612, m72 = build(cases, "6.12"), build(cases, "7.2")
    alloc612, alloc72 = m612.rows["IOMMU_HWPT_ALLOC"], m72.rows["IOMMU_HWPT_ALLOC"]
    # 6.12 refuses IOMMU_HWPT_ALLOC_PASID, a bit it does not name (a flags check); 7.2 allocates.
    assert alloc612.errnos == {"EOPNOTSUPP": {"mock-hwpt-alloc-pasid"}}
    assert alloc612.cells["flags"] == {"mock-hwpt-alloc-pasid"} and not alloc612.cells["happy"]
    assert not alloc72.errnos and not alloc72.cells["flags"]
    assert alloc72.cells["happy"] == {"mock-hwpt-alloc-pasid"}
    # type1 MAP_DMA overflow: EINVAL before 7.2, EOVERFLOW from 7.2 on; the compat layer EOVERFLOW on both.
    assert m612.rows["VFIO_IOMMU_MAP_DMA"].errnos == {
        "EINVAL": {"container-map-iova-overflow[legacy]"}, "EOVERFLOW": {"container-map-iova-overflow[iommufd-compat]"}}
    assert m72.rows["VFIO_IOMMU_MAP_DMA"].errnos == {
        "EOVERFLOW": {"container-map-iova-overflow[legacy]", "container-map-iova-overflow[iommufd-compat]"}}


# The handler each series scans for an ioctl whose code moved between the trees.
MOVED = {"6.12": ("iommufd_fault_alloc", "drivers/iommu/iommufd/fault.c"),
         "7.2": ("iommufd_fault_alloc", "drivers/iommu/iommufd/eventq.c")}


@pytest.mark.parametrize("series", uapi.SERIES)
def test_the_errno_scan_reads_each_series_own_tree(series: str) -> None:
    files = sources(series)
    if find_source(files, series=series) is None:
        unavailable(f"no linux-source-{series} tree (vfio-conformance kernel build --series {series})")
    m = build_for([], series)
    assert m.kernel_source is not None and m.series == series
    view = uapi.for_series(series)
    index = KernelIndex.load(Path(m.kernel_source), files)

    def handler(name: str) -> tuple[str, int]:
        file, _, line = view.IOCTLS[name].handler.rpartition(":")
        return file, int(line)

    # Every handler the scanned files hold is found at the line the series' view cites, and
    # names errnos (but VFIO_GET_API_VERSION, which cannot fail).
    for name in view.IOCTLS:
        file, line = handler(name)
        if file in files and not m.rows[name].no_error_path:
            assert index.at(file, line) is not None and m.rows[name].kernel_errnos, (series, name, file, line)
    fn, file = MOVED[series]
    found = index.at(*handler("IOMMU_FAULT_QUEUE_ALLOC"))
    assert found is not None and (found.name, found.file) == (fn, file)
    assert any(v.startswith(file) for v in (m.rows["IOMMU_FAULT_QUEUE_ALLOC"].kernel_errnos or {}).values())
    if series == "7.2":
        viommu = m.rows["IOMMU_VIOMMU_ALLOC"].kernel_errnos or {}
        assert {"EOPNOTSUPP", "ENOENT", "E2BIG"} <= set(viommu), viommu
        assert viommu["EOPNOTSUPP"].startswith("drivers/iommu/iommufd/")
        assert m.rows["VFIO_DEVICE_FEATURE(DMA_BUF)"].kernel_errnos
    assert any(f"errnos the {series} handlers name" in line for line in summary(m))


def test_coverage_command_writes_markdown_and_json_per_series(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["coverage", "--cases", "size/*.yaml", "--report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Linux 6.12: " in out and "Linux 7.2: " in out and "applicable rows with a happy-path" in out
    for series in uapi.SERIES:
        data = json.loads((tmp_path / f"coverage-{series}.json").read_text())
        assert data["series"] == series and data["rows"]["IOMMU_IOAS_MAP"]["columns"]["size<min"]
        assert "| `IOMMU_IOAS_MAP` |" in (tmp_path / f"coverage-{series}.md").read_text()
    assert "IOMMU_VIOMMU_ALLOC" in json.loads((tmp_path / "coverage-7.2.json").read_text())["rows"]
    assert "IOMMU_VIOMMU_ALLOC" not in json.loads((tmp_path / "coverage-6.12.json").read_text())["rows"]
    assert not (tmp_path / "coverage.json").exists()


def test_coverage_command_one_series_prints_its_table_and_ksrc_needs_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["coverage", "--series", "7.2", "--cases", "size/*.yaml", "--report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "IOMMU_HW_QUEUE_ALLOC" in out and "Linux 7.2: " in out and "Linux 6.12" not in out
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["coverage-7.2.json", "coverage-7.2.md"]
    refused = main(["coverage", "--ksrc", str(tmp_path), "--cases", "size/*.yaml", "--report", str(tmp_path)])
    assert refused == USAGE_ERROR
    # --ksrc names the tree the scan reads: an empty one scans nothing, and says where it looked.
    assert main(["coverage", "--series", "6.12", "--ksrc", str(tmp_path), "--cases", "size/*.yaml",
                 "--report", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "coverage-6.12.json").read_text())
    assert data["kernel_source"] == str(tmp_path) and data["rows"]["IOMMU_IOAS_MAP"]["kernel_errnos"] is None


def test_text_and_markdown_render_every_row() -> None:
    m = build([])
    assert all(name in text(m) for name in m.rows)
    assert all(f"`{name}`" in markdown(m) for name in m.rows)


def test_the_goals_table_counts_a_target_without_its_excluded_files() -> None:
    from harness.coverage.kernel_lines import target_table
    from harness.kernel.gcov import FileCoverage

    cov = {p: FileCoverage(p, counts) for p, counts in (
        ("drivers/iommu/iommufd/ioas.c", {1: 1, 2: 0, 3: 1, 4: 0}),
        ("drivers/iommu/iommufd/selftest.c", {1: 0, 2: 0}),      # test code: not counted
        ("drivers/vfio/pci/vfio_pci_igd.c", {1: 1}))}             # graphics only: not counted
    corpus, fuzz = target_table(cov), target_table(cov, fuzz=True)
    assert "| drivers/iommu/iommufd without selftest.c | 50.0% | 4 | 92% |" in corpus
    assert "| drivers/iommu/iommufd without selftest.c | 50.0% | 4 | 85% |" in fuzz
    assert "| drivers/vfio/pci without vfio_pci_igd.c | 0.0% | 0 | 50% |" in fuzz
