"""include/uapi/asm-generic/mman-common.h: the protections mmap(2) and mprotect(2) take,
so a case names them (``prot: PROT_READ``) and the backends and the model read one
declaration.  x86 (arch/x86/mm/pgprot.c, protection_map) makes every page that has any
of read, write or exec readable, and only PROT_WRITE writable."""

from __future__ import annotations

from .abi import register_constants

PROT_NONE = 0x0
PROT_READ = 0x1
PROT_WRITE = 0x2
PROT_EXEC = 0x4
PROT_SEM = 0x8
# mprotect(2) rejects any other bit (include/linux/mman.h:108-111, arch_validate_prot()).
MPROTECT_BITS = PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM

register_constants(globals(), "PROT_")


def prot_allows(prot: int, write: bool) -> bool:
    """Whether a user access (copy_to_user when ``write``, else copy_from_user) to a page of
    protection ``prot`` succeeds on x86: read, write or exec each make the page readable,
    only PROT_WRITE writable (arch/x86/mm/pgprot.c:9-16)."""
    return bool(prot & PROT_WRITE) if write else bool(prot & (PROT_READ | PROT_WRITE | PROT_EXEC))


def set_protection(prot_of: dict[int, int], pages: range, prot: int) -> None:
    """Record ``prot`` for ``pages`` in a page -> protection table that holds only the pages
    mprotect(2) took away from read/write (a page given read/write again drops out)."""
    for page in pages:
        if prot == PROT_READ | PROT_WRITE:
            prot_of.pop(page, None)
        else:
            prot_of[page] = prot
