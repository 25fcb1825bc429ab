"""The corpus keeps its setup typed once (issue 11, item 1): the blocks of six or more lines
that three or more case files repeat (tests/repeated_blocks.py) may only shrink in number, and
the ones moved into fixture variants and macros never come back."""

from __future__ import annotations

from pathlib import Path

from repeated_blocks import ROOT, repeated, setup_lines

# Repeated blocks left once the corpus moved onto fixture variants, `extends` and macros (184
# before): none.  A new one goes into a fixture or a macro; never raise this.
MAX_REPEATED = 0
GONE = ("container_node: /dev/vfio/vfio", "container_node: /dev/iommu",
        "flags: [IOMMU_IOAS_MAP_FIXED_IOVA, IOMMU_IOAS_MAP_READABLE, IOMMU_IOAS_MAP_WRITEABLE]",
        "flags: [VFIO_DMA_MAP_FLAG_READ, VFIO_DMA_MAP_FLAG_WRITE]")


def test_repeated_setup_only_shrinks() -> None:
    found = repeated(ROOT / "cases")
    first = "" if not found else f": {', '.join(found[0][1])} repeat\n" + "\n".join(found[0][0])
    assert len(found) <= MAX_REPEATED, f"{len(found)} blocks repeated in 3+ case files (at most {MAX_REPEATED}); " \
                                       f"put the new one in a fixture or a macro{first}"


def test_the_blocks_moved_into_fixtures_and_macros_stay_there() -> None:
    back = sorted({line.strip() for block, _ in repeated(ROOT / "cases", window=1) for line in block
                   if line.strip() in GONE})
    assert not back, back


def test_the_measure_finds_a_block_typed_three_times(tmp_path: Path) -> None:
    block = "".join(f"  - open: /dev/null{i}\n    as: f{i}\n" for i in range(3))
    for n in range(3):
        (tmp_path / "a").mkdir(exist_ok=True)
        text = f"id: c{n}\n# note\nsteps:\n{block}\n  - close: f0\nverified_on: []\n"
        (tmp_path / "a" / f"c{n}.yaml").write_text(text)
    assert len(setup_lines((tmp_path / "a" / "c0.yaml").read_text())) == 7
    found = repeated(tmp_path)
    assert found and all(len(files) == 3 for _, files in found)
    assert repeated(tmp_path, max_files=4) == []
