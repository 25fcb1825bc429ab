"""mm/memfd.c and the shmem file behind it (mm/shmem.c), as far as the harness uses one:
memfd_create(2) + ftruncate(2) (the case language's ``memfd:`` step), read(2) and write(2)
at the file position, and the page cache that IOMMU_IOAS_MAP_FILE pins (7.2).

The page cache is kept per page (a folio of one page, allocated on first use): a
``Mapping`` of PAGE_SIZE bytes, the same "physical page" object user memory uses, so
pinned file pages and pinned user pages are told apart and counted the same way.
"""

from __future__ import annotations

import errno

from .errors import Errno, cite
from .kernel import File, ModelKernel
from .memory import PAGE_SIZE, Mapping, PageBytes

# mm/memfd.c:330: NAME_MAX - strlen("memfd:")
MFD_NAME_MAX_LEN = 255 - len("memfd:")
# include/linux/fs.h MAX_LFS_FILESIZE: an loff_t
MAX_LFS_FILESIZE = (1 << 63) - 1


class Memfd(File):
    """A file memfd_create() made: a shmem inode (``shmem_file()`` is true of it)."""

    kind = "memfd"

    def __init__(self, name: str):
        self.name = "memfd:" + name
        self.i_size = 0
        self.pos = 0
        self.folios: dict[int, Mapping] = {}

    def folio(self, index: int) -> Mapping:
        """The page cache page of ``index``, allocated (zeroed) on first use
        (shmem_get_folio(SGP_CACHE))."""
        f = self.folios.get(index)
        if f is None:
            f = self.folios[index] = Mapping(index * PAGE_SIZE, PageBytes(PAGE_SIZE))
        return f

    def truncate(self, length: int) -> None:
        """ftruncate(2) (fs/open.c:188-203 -> shmem_setattr()): pages past the new size
        leave the page cache (a pinned one lives on, detached), the tail of the last page
        reads as zeroes."""
        if length < 0 or length > MAX_LFS_FILESIZE:   # a negative loff_t
            raise Errno(errno.EINVAL, cite("fs/open.c", 193))
        if length < self.i_size:
            last = (length + PAGE_SIZE - 1) // PAGE_SIZE
            for index in [i for i in self.folios if i >= last]:
                del self.folios[index]
            if length % PAGE_SIZE and length // PAGE_SIZE in self.folios:
                page = self.folios[length // PAGE_SIZE].data
                page[length % PAGE_SIZE:] = bytes(PAGE_SIZE - length % PAGE_SIZE)
        self.i_size = length

    def read(self, k: ModelKernel, length: int) -> bytes:
        """shmem_file_read_iter() (mm/shmem.c:3179-3296): up to i_size from the position."""
        n = max(0, min(length, self.i_size - self.pos))
        out = self._copy(self.pos, n, None)
        self.pos += n
        return out

    def write(self, k: ModelKernel, data: bytes) -> int:
        """shmem_file_write_iter() (mm/shmem.c:3298-3318): at the position, growing i_size."""
        end = self.pos + len(data)
        if end > MAX_LFS_FILESIZE:
            raise Errno(errno.EFBIG, "mm/filemap.c:generic_write_check_limits")
        self._copy(self.pos, len(data), data)
        self.pos = end
        self.i_size = max(self.i_size, end)
        return len(data)

    positional = True   # a regular file: pread(2)/pwrite(2) at any offset

    def pread(self, k: ModelKernel, length: int, pos: int) -> bytes:
        saved, self.pos = self.pos, pos
        try:
            return self.read(k, length)
        finally:
            self.pos = saved

    def pwrite(self, k: ModelKernel, data: bytes, pos: int) -> int:
        saved, self.pos = self.pos, pos
        try:
            return self.write(k, data)
        finally:
            self.pos = saved

    def _copy(self, pos: int, length: int, data: bytes | None) -> bytes:
        """Read (``data`` None) or write ``length`` bytes at file offset ``pos``."""
        out = bytearray()
        done = 0
        while done < length:
            index, off = divmod(pos + done, PAGE_SIZE)
            n = min(PAGE_SIZE - off, length - done)
            if data is None:   # a hole reads as zeroes and stays one (shmem_file_read_iter: SGP_READ)
                folio = self.folios.get(index)
                out += folio.data[off:off + n] if folio is not None else bytes(n)
            else:
                self.folio(index).data[off:off + n] = data[done:done + n]
            done += n
        return bytes(out)


def shmem_file(f: File) -> bool:
    """include/linux/shmem_fs.h:193-200: the file's mapping is shmem's."""
    return isinstance(f, Memfd)


def memfd_pin_folios(f: File, start: int, end: int) -> list[Mapping]:
    """mm/gup.c:3442-3538@7.2: the page cache pages of file bytes [start, end] (``end``
    inclusive, pages allocated if absent), for a shmem file only, and only up to its size."""
    if start < 0 or start > end:
        raise Errno(errno.EINVAL, cite("mm/gup.c", 3455, "7.2"))
    if not shmem_file(f):
        raise Errno(errno.EINVAL, cite("mm/gup.c", 3461, "7.2"))
    assert isinstance(f, Memfd)
    if end >= f.i_size:
        raise Errno(errno.EINVAL, cite("mm/gup.c", 3464, "7.2"))
    return [f.folio(i) for i in range(start // PAGE_SIZE, end // PAGE_SIZE + 1)]


def memfd_create(k: ModelKernel, name: str, size: int) -> int:
    """memfd_create(name, MFD_CLOEXEC) (mm/memfd.c:399-470) then ftruncate(fd, size);
    a failed ftruncate closes the fd again (the harness's memfd operation)."""
    if len(name.encode()) > MFD_NAME_MAX_LEN:
        raise Errno(errno.EINVAL, cite("mm/memfd.c", 432))
    f = Memfd(name)
    fd = k.install_fd(f)
    try:
        f.truncate(size)
    except Errno:
        k.close(fd)
        raise
    return fd
