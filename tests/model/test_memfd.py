"""The model's memfd (mm/memfd.c + shmem) and the case language's memfd step on the model."""

from __future__ import annotations

import errno
import textwrap
from pathlib import Path

from harness.cases.loader import Loader
from harness.model.backend import ModelBackend
from harness.model.errors import Errno
from harness.model.memfd import Memfd, memfd_pin_folios
from harness.runner.engine import Runner
from harness.runner.normalise import normalise

PAGE = 4096


def test_memfd_has_its_size_and_zeroed_contents() -> None:
    m = ModelBackend()
    fd = m.memfd(3 * PAGE, "model-test")
    assert fd.ok and fd.ret >= 3
    f = m.kernel.files[fd.ret]
    assert isinstance(f, Memfd) and (f.name, f.i_size) == ("memfd:model-test", 3 * PAGE)
    assert m.write(fd.ret, b"abc").ret == 3
    # read(2) goes on from the file position, up to the size
    assert m.read(fd.ret, 4 * PAGE).data == b"\0" * (3 * PAGE - 3)
    assert m.read(fd.ret, 8).data == b""
    assert m.close(fd.ret).ok and m.close(fd.ret).errno == errno.EBADF


def test_write_past_the_size_grows_the_file() -> None:
    m = ModelBackend()
    fd = m.memfd(0).ret
    assert m.write(fd, b"x" * (PAGE + 1)).ret == PAGE + 1
    f = m.kernel.files[fd]
    assert isinstance(f, Memfd) and f.i_size == PAGE + 1
    assert f.folio(1).data[:2] == b"x\0"


def test_memfd_refusals_are_the_kernels() -> None:
    m = ModelBackend()
    files = dict(m.kernel.files)
    for size, name in ((-1, "x"), (1 << 63, "x"), (1 << 64, "x"), (PAGE, "n" * 250)):
        res = m.memfd(size, name)
        assert (res.ret, res.errno) == (-1, errno.EINVAL), (size, name)
    assert m.last_error is not None and m.last_error.where == "mm/memfd.c:432"
    assert m.kernel.files == files  # a failed ftruncate closed the fd again


def test_pin_folios_wants_a_shmem_file_and_whole_pages_within_its_size() -> None:
    m = ModelBackend()
    f = m.kernel.files[m.memfd(PAGE + PAGE // 2).ret]
    assert isinstance(f, Memfd)
    assert memfd_pin_folios(f, 0, PAGE - 1) == [f.folio(0)]
    for start, end in ((0, 2 * PAGE - 1), (PAGE, 2 * PAGE - 1)):
        try:
            memfd_pin_folios(f, start, end)
        except Errno as e:
            assert (e.code, e.where) == (errno.EINVAL, "mm/gup.c:3464@7.2")
        else:
            raise AssertionError("pinned past i_size")
    ev = m.kernel.files[m.eventfd().ret]
    try:
        memfd_pin_folios(ev, 0, PAGE - 1)
    except Errno as e:
        assert (e.code, e.where) == (errno.EINVAL, "mm/gup.c:3461@7.2")


CASE = """\
id: ioas-memfd-step
area: ioas
purpose: The memfd step.
verified_on: []
steps:
  - eventfd: 0
    as: ev
  - memfd: 2 * PAGE_SIZE
    name: case
    as: mfd
  - write: mfd
    hex: "0102"
  - read: mfd
    length: 4
    expect: {data: "00000000"}
  - memfd: -1
    expect: EINVAL
"""


def test_memfd_step_on_the_model(tmp_path: Path) -> None:
    d = tmp_path / "cases" / "ioas"
    d.mkdir(parents=True)
    (d / "case.yaml").write_text(textwrap.dedent(CASE))
    (case,) = Loader(tmp_path / "cases").load_file(d / "case.yaml")
    trace = Runner(ModelBackend()).run(case)
    assert trace.status == "pass", trace.reason
    step = trace.steps[1]
    assert (step.kind, step.request, step.errno) == ("memfd", {"size": 2 * PAGE, "name": "case"}, None)
    assert trace.steps[4].errno == "EINVAL" and trace.steps[4].where == "fs/open.c:193"
    # The normaliser renames the memfd like the other fds: its number is the target's choice.
    norm = normalise(trace)
    assert (norm[0]["ret"], norm[1]["ret"], norm[2]["request"]["fd"]) == ("fd#1", "fd#2", "fd#2")
