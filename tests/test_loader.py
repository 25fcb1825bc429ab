"""Malformed case files fail at load time with file, line and field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.cases.case import Case, CaseError
from harness.cases.loader import Loader

GOOD = """\
id: ioas-example
area: ioas
purpose: An example.
verified_on: []
steps:
  - open: /dev/iommu
    as: iommufd
  - ioctl: IOMMU_IOAS_ALLOC
    fd: iommufd
    save: {ioas: out_ioas_id}
  - ioctl: IOMMU_IOAS_MAP
    fd: iommufd
    args:
      flags: [IOMMU_IOAS_MAP_FIXED_IOVA, IOMMU_IOAS_MAP_READABLE]
      ioas_id: $ioas
      length: 0x1000
      iova: minsz(IOMMU_IOAS_MAP) * 0x100
    expect: EINVAL
"""


_MAPPED = "  - mmap: 0x2000\n    as: b\n"


def load(tmp_path: Path, text: str, area: str = "ioas") -> list[Case]:
    d = tmp_path / "cases" / area
    d.mkdir(parents=True, exist_ok=True)
    (d / "case.yaml").write_text(textwrap.dedent(text))
    return Loader(tmp_path / "cases").load_file(d / "case.yaml")


def error(tmp_path: Path, text: str, area: str = "ioas") -> CaseError:
    with pytest.raises(CaseError) as e:
        load(tmp_path, text, area)
    return e.value


def test_good_case_loads(tmp_path: Path) -> None:
    (case,) = load(tmp_path, GOOD)
    assert case.id == "ioas-example"
    assert [s.kind for s in case.steps] == ["open", "ioctl", "ioctl"]
    assert case.steps[2].expect.errno == "EINVAL"
    assert case.steps[1].save == {"ioas": "out_ioas_id"}


@pytest.mark.parametrize(
    ("old", "new", "line", "where", "message"),
    [
        ("      flags: [IOMMU_IOAS_MAP_FIXED_IOVA, IOMMU_IOAS_MAP_READABLE]",
         "      flags: [IOMMU_IOAS_MAP_FIXED_IOVA, IOMMU_IOAS_MAP_READABLEE]",
         14, "steps[2].args.flags[1]", "unknown constant IOMMU_IOAS_MAP_READABLEE"),
        ("      length: 0x1000", "      lenght: 0x1000", 16, "steps[2].args.lenght", "has no field 'lenght'"),
        ("  - ioctl: IOMMU_IOAS_ALLOC", "  - ioctl: IOMMU_IOAS_ALOC", 8, "steps[1].ioctl", "unknown ioctl"),
        ("      ioas_id: $ioas", "      ioas_id: $ioass", 11, "steps[2]", "$ioass is not bound"),
        ("    expect: EINVAL", "    expect: EINVALID", 18, "steps[2].expect", "not an errno name"),
        ("    fd: iommufd\n    save", "    fd: iommu\n    save", 9, "steps[1].fd", "not bound"),
        ("area: ioas", "area: ioa", 2, "area", "folder 'ioas'"),
        ("      iova: minsz(IOMMU_IOAS_MAP) * 0x100", "      iova: minsz(IOMMU_IOAS_MAP * 0x100",
         17, "steps[2].args.iova", "cannot parse"),
        ("      iova: minsz(IOMMU_IOAS_MAP) * 0x100", "      iova: sizeof(iommu_ioas_mapp)",
         17, "steps[2].args.iova", "no struct or ioctl named iommu_ioas_mapp"),
        ("    expect: EINVAL", "    expect: {out: {nonexistent: 1}}", 18, "steps[2].expect",
         "no output field 'nonexistent'"),
        ("    as: iommufd", "    as: iommufd\n    bogus: 1", 8, "steps[0].bogus", "unknown key"),
        ("  - open: /dev/iommu\n", "  - mmap: 0x1000\n    align: 0x3000\n    as: b\n  - open: /dev/iommu\n", 7,
         "steps[0].align", "power of two"),
        ("  - open: /dev/iommu\n", "  - memfd:\n    as: m\n  - open: /dev/iommu\n", 6,
         "steps[0].memfd", "memfd takes the file's size"),
        ("  - open: /dev/iommu\n", "  - memfd: 0x1000\n    name: [a]\n    as: m\n  - open: /dev/iommu\n", 7,
         "steps[0].name", "at most 249 bytes"),
        ("  - open: /dev/iommu\n", f"  - memfd: 0x1000\n    name: {'n' * 250}\n  - open: /dev/iommu\n", 7,
         "steps[0].name", "at most 249 bytes"),
        ("  - open: /dev/iommu\n", "  - memfd: 0x1000\n    align: 4096\n  - open: /dev/iommu\n", 7,
         "steps[0].align", "unknown key for a memfd step"),
        ("  - open: /dev/iommu\n", "  - memfd: $size\n  - open: /dev/iommu\n", 6,
         "steps[0]", "$size is not bound"),
        ("  - open: /dev/iommu\n", f"{_MAPPED}  - mprotect: b\n  - open: /dev/iommu\n", 8,
         "steps[1]", "mprotect needs prot"),
        ("  - open: /dev/iommu\n", f"{_MAPPED}  - mprotect: b\n    prot: PROT_NONNE\n  - open: /dev/iommu\n", 9,
         "steps[1].prot", "unknown constant PROT_NONNE"),
        ("  - open: /dev/iommu\n", f"{_MAPPED}  - mprotect: b\n    offset: -1\n    prot: 0\n  - open: /dev/iommu\n",
         9, "steps[1].offset", "outside a size_t"),
        ("  - open: /dev/iommu\n", f"{_MAPPED}  - munmap: b\n    prot: 0\n  - open: /dev/iommu\n", 9,
         "steps[1].prot", "unknown key for a munmap step"),
        ("  - open: /dev/iommu\n", f"{_MAPPED}  - mprotect: c\n    prot: 0\n  - open: /dev/iommu\n", 8,
         "steps[1].mprotect", "not bound"),
    ],
)
def test_malformed_case_names_file_line_and_field(tmp_path: Path, old: str, new: str, line: int,
                                                  where: str, message: str) -> None:
    assert old in GOOD
    e = error(tmp_path, GOOD.replace(old, new, 1))
    assert e.path.endswith("case.yaml")
    assert e.line == line, str(e)
    assert e.where == where, str(e)
    assert message in e.message, str(e)
    assert "\n" not in str(e)


def test_memfd_step_loads(tmp_path: Path) -> None:
    text = GOOD.replace("  - open: /dev/iommu\n", "  - memfd: 4 * PAGE_SIZE\n    name: buf\n    as: mfd\n"
                        "  - memfd: 0\n  - open: /dev/iommu\n", 1)
    (case,) = load(tmp_path, text)
    named, unnamed = case.steps[0], case.steps[1]
    assert (named.kind, named.bind, named.spec["name"]) == ("memfd", "mfd", "buf")
    assert named.spec["memfd"].eval({}) == 0x4000
    assert "name" not in unnamed.spec


def test_mprotect_and_munmap_steps_load(tmp_path: Path) -> None:
    text = GOOD.replace("  - open: /dev/iommu\n", f"{_MAPPED}  - mprotect: b\n    offset: PAGE_SIZE\n"
                        "    prot: [PROT_READ, PROT_WRITE]\n  - munmap: b\n    offset: 0\n    length: 0x1000\n"
                        "  - open: /dev/iommu\n", 1)
    (case,) = load(tmp_path, text)
    prot, unmap = case.steps[1], case.steps[2]
    assert (prot.kind, prot.spec["mprotect"], prot.spec["offset"].eval({})) == ("mprotect", "b", 4096)
    assert "length" not in prot.spec and [p.eval({}) for p in prot.spec["prot"]] == [1, 2]
    assert (unmap.kind, unmap.spec["length"]) == ("munmap", 0x1000)


def test_missing_required_key(tmp_path: Path) -> None:
    e = error(tmp_path, GOOD.replace("verified_on: []\n", ""))
    assert e.where == "verified_on" and "missing" in e.message


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    e = error(tmp_path, GOOD.replace("    as: iommufd", "    as: [iommufd"))
    assert e.line >= 7 and e.message.startswith("YAML:")


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    e = error(tmp_path, GOOD.replace("purpose: An example.", "purpose: An example.\npurpose: Again."))
    assert "duplicate key" in e.message


def test_load_all_collects_errors_without_stopping(tmp_path: Path) -> None:
    load(tmp_path, GOOD)
    bad = tmp_path / "cases" / "ioas" / "bad.yaml"
    bad.write_text(GOOD.replace("ioas-example", "ioas-bad").replace("IOMMU_IOAS_ALLOC", "NOPE"))
    cases, errors = Loader(tmp_path / "cases").load_all()
    assert [c.id for c in cases] == ["ioas-example"]
    assert len(errors) == 1 and errors[0].path.endswith("bad.yaml")


def test_duplicate_ids_across_files(tmp_path: Path) -> None:
    load(tmp_path, GOOD)
    (tmp_path / "cases" / "ioas" / "again.yaml").write_text(GOOD)
    cases, errors = Loader(tmp_path / "cases").load_all()
    assert len(cases) == 1 and "duplicate id" in errors[0].message


def test_a_variants_requires_the_case_never_uses_is_an_error(tmp_path: Path) -> None:
    ignored = GOOD + "variants:\n  a: {x: 1}\n  b: {requires: {kernel: \">=7.2\"}}\n"
    e = error(tmp_path, ignored)
    assert e.line == ignored.splitlines().index("  b: {requires: {kernel: \">=7.2\"}}") + 1
    assert e.where == "variants.b.requires" and "ignored" in str(e)
    used = ignored.replace("verified_on: []\n", "verified_on: []\nrequires: ${requires}\n")
    used = used.replace("{x: 1}", "{requires: {}}")
    assert [c.requires.kernel for c in load(tmp_path, used)][1] == ">=7.2"


def test_matrix_expands_to_named_variants(tmp_path: Path) -> None:
    text = GOOD.replace("steps:", "matrix:\n  iova: [0x1001, 3]\nsteps:", 1).replace(
        "iova: minsz(IOMMU_IOAS_MAP) * 0x100", "iova: ${iova}")
    cases = load(tmp_path, text)
    assert [c.test_id for c in cases] == ["ioas-example[0x1001]", "ioas-example[3]"]
    assert cases[0].steps[2].spec["args"]["iova"] == 0x1001


def test_fixture_steps_run_first_and_bind_names(tmp_path: Path) -> None:
    fx = tmp_path / "cases" / "fixtures"
    fx.mkdir(parents=True)
    (fx / "ctx.yaml").write_text("requires: {nodes: [/dev/iommu]}\nsteps:\n  - open: /dev/iommu\n    as: iommufd\n")
    text = GOOD.replace("steps:\n  - open: /dev/iommu\n    as: iommufd\n", "fixture: ctx\nsteps:\n")
    (case,) = load(tmp_path, text)
    assert case.steps[0].from_fixture and case.steps[0].kind == "open"
    assert case.requires.nodes == ["/dev/iommu"]


def test_unknown_fixture(tmp_path: Path) -> None:
    e = error(tmp_path, GOOD.replace("steps:", "fixture: nope\nsteps:", 1))
    assert e.where == "fixture" and "no fixture 'nope'" in e.message


def test_raw_ioctl_and_array_fields(tmp_path: Path) -> None:
    text = GOOD.replace("    expect: EINVAL\n", "    expect: EINVAL\n"
                        "  - raw_ioctl: 0x3b00 + 0x8f\n    fd: iommufd\n    pointer: 0\n    expect: EFAULT\n"
                        "  - ioctl: IOMMU_GET_HW_INFO\n    fd: iommufd\n    args: {__reserved: [0, 1, 0]}\n"
                        "    expect: EOPNOTSUPP\n")
    (case,) = load(tmp_path, text)
    assert case.steps[3].kind == "raw_ioctl" and case.steps[3].label() == "raw_ioctl 0x3b00 + 0x8f"
    assert list(case.steps[4].spec["args"]["__reserved"]) == [0, 1, 0]
    e = error(tmp_path, text.replace("[0, 1, 0]", "[0, 1, 0, 0]"))
    assert e.where == "steps[4].args.__reserved" and "array of 3" in e.message


def test_fixture_per_variant(tmp_path: Path) -> None:
    fx = tmp_path / "cases" / "fixtures"
    fx.mkdir(parents=True)
    for name in ("a", "b"):
        (fx / f"{name}.yaml").write_text(f"requires: {{config: [{name.upper()}]}}\nsteps:\n"
                                         "  - open: /dev/iommu\n    as: iommufd\n")
    text = GOOD.replace("steps:\n  - open: /dev/iommu\n    as: iommufd\n",
                        "fixture: ${fx}\nvariants:\n  one: {fx: a}\n  two: {fx: b}\nsteps:\n")
    one, two = load(tmp_path, text)
    assert (one.requires.config, two.requires.config) == (["A"], ["B"])


def test_a_pattern_names_a_folder_a_folder_glob_or_a_file_glob() -> None:
    from harness.cases.loader import Loader

    root = Path(__file__).resolve().parent.parent / "cases"
    loader = Loader(root)

    def ids(pattern: str) -> set[str]:
        cases, errors = loader.load_all(pattern)
        assert not errors
        return {c.id for c in cases}

    folder = ids("ownership")
    assert folder == ids("ownership/**") == ids("ownership/*.yaml")
    some = ids("ownership/cdev-bind*")
    assert some and some < folder and all(i.startswith("ownership-cdev-bind") for i in some)
    assert ids("ownership/cdev-bind-twice-einval") == {"ownership-cdev-bind-twice-einval"}


def _shared(tmp_path: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = tmp_path / "cases" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


PERSONALITY = {
    "fixtures/node.yaml": "variants:\n  legacy: {node: /dev/vfio/vfio, requires: {container: legacy}}\n"
                          "  compat: {node: /dev/iommu, requires: {nodes: [/dev/iommu]}}\n",
    "fixtures/opened.yaml": "extends: node\nrequires: {config: [VFIO]}\nsteps:\n  - open: ${node}\n    as: container\n",
}
VARIANT_CASE = ("id: container-x\narea: container\npurpose: p.\nverified_on: []\nfixture: opened\n{variants}"
                "steps:\n  - ioctl: VFIO_GET_API_VERSION\n    fd: container\n    expect: {{ret: '${{ret}}'}}\n")


def test_fixture_variants_are_inherited_refined_or_multiplied(tmp_path: Path) -> None:
    from harness.cases.loader import Loader

    _shared(tmp_path, PERSONALITY)
    path = tmp_path / "cases" / "container" / "x.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(VARIANT_CASE.format(variants="variants:\n  legacy: {ret: 0}\n  compat: {ret: 1}\n"))
    legacy, compat = Loader(tmp_path / "cases").load_file(path)
    assert (legacy.test_id, compat.test_id) == ("container-x[legacy]", "container-x[compat]")
    assert legacy.params == {"node": "/dev/vfio/vfio", "requires": {"container": "legacy"}, "ret": 0}
    assert (legacy.requires.container, legacy.requires.config, compat.requires.nodes) == ("legacy", ["VFIO"],
                                                                                         ["/dev/iommu"])
    assert compat.steps[0].spec["open"] == "/dev/iommu" and compat.steps[0].from_fixture
    path.write_text(VARIANT_CASE.format(variants="variants:\n  a: {ret: 0}\n  b: {ret: 1}\n"))
    ids = [c.test_id for c in Loader(tmp_path / "cases").load_file(path)]
    assert ids == ["container-x[legacy-a]", "container-x[legacy-b]", "container-x[compat-a]", "container-x[compat-b]"]


def test_a_macro_expands_at_the_call_and_takes_expect(tmp_path: Path) -> None:
    from harness.cases.loader import Loader

    _shared(tmp_path, {
        "macros/alloc.yaml": "params: [flags]\noptional: {fd: iommufd}\nsteps:\n"
                             "  - ioctl: IOMMU_IOAS_ALLOC\n    fd: ${fd}\n    args: {flags: '${flags}'}\n",
        "macros/two.yaml": "params: [a]\nsteps:\n  - alloc: {flags: '${a}', save: {first: out_ioas_id}}\n"
                           "  - alloc: {flags: 0}\n"})
    path = tmp_path / "cases" / "ioas" / "m.yaml"
    path.parent.mkdir(parents=True)
    path.write_text("id: ioas-m\narea: ioas\npurpose: p.\nverified_on: []\nsteps:\n  - open: /dev/iommu\n"
                    "    as: iommufd\n  - two: {a: 0}\n  - alloc: {flags: 1, expect: EINVAL}\n"
                    "  - ioctl: IOMMU_DESTROY\n    fd: iommufd\n    args: {id: $first}\n")
    (case,) = Loader(tmp_path / "cases").load_file(path)
    assert [s.kind for s in case.steps] == ["open", "ioctl", "ioctl", "ioctl", "ioctl"]
    assert [s.line for s in case.steps] == [6, 8, 8, 9, 10]
    assert case.steps[1].save == {"first": "out_ioas_id"} and case.steps[2].save == {}
    assert case.steps[3].expect.errno == "EINVAL" and case.steps[1].expect.errno is None


def test_extends_merges_requirements_and_runs_the_base_first(tmp_path: Path) -> None:
    from harness.cases.case import CaseError
    from harness.cases.loader import Loader

    _shared(tmp_path, {**PERSONALITY, "fixtures/deep.yaml": "extends: opened\nsteps:\n  - close: container\n"})
    path = tmp_path / "cases" / "container" / "x.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(VARIANT_CASE.format(variants="").replace("opened", "deep").replace("${ret}", "0")
                    .replace("fd: container", "fd: group").replace("steps:\n", "steps:\n  - open: /dev/null\n"
                                                                                   "    as: group\n"))
    legacy, _ = Loader(tmp_path / "cases").load_file(path)
    assert [s.kind for s in legacy.steps[:2]] == ["open", "close"] and legacy.requires.config == ["VFIO"]
    for i in range(10):
        _shared(tmp_path, {f"fixtures/c{i}.yaml": f"extends: c{i + 1}\n"})
    _shared(tmp_path, {"fixtures/c10.yaml": "steps:\n  - open: /dev/null\n    as: group\n"})
    path.write_text(path.read_text().replace("fixture: deep", "fixture: c0"))
    try:
        Loader(tmp_path / "cases").load_file(path)
    except CaseError as e:
        assert e.path == str(path) and "extends chains at most 8 fixtures" in str(e)
    else:
        raise AssertionError("a chain of 11 fixtures loaded")


def test_write_mem_of_an_fd_number_loads_and_excludes_hex(tmp_path: Path) -> None:
    text = GOOD.replace("  - open: /dev/iommu\n", "  - open: /dev/iommu\n    as: i\n"
                        f"{_MAPPED}  - write_mem: {{at: $b + 8, fd: $i}}\n", 1)
    (case,) = load(tmp_path, text)
    step = next(s for s in case.steps if s.kind == "write_mem")
    assert "hex" not in step.spec and step.spec["fd"].eval({"i": 5}) == 5
    e = error(tmp_path, text.replace("fd: $i}", "fd: $i, hex: '00'}"))
    assert "hex: or fd:, not both" in e.message, str(e)
