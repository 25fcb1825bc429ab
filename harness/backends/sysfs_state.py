"""Host safety for the kernel backend: which sysfs writes a run may make, the
record of what the PCI functions looked like before, and putting it back.

The kernel backend runs as root on kernel developers' machines.  A sysfs write
is allowed only when it can change nothing but a PCI function the user named
(``--device``, or a VF of one) or one of two module parameters:

- ``/sys/bus/pci/devices/<bdf>/{driver_override,sriov_numvfs,reset_method}``, also
  reached through a named PF's ``virtfnN`` link
- ``/sys/bus/pci/drivers/<drv>/{bind,unbind}``, ``/sys/bus/pci/devices/<any>/driver/{bind,unbind}``
  and ``/sys/bus/pci/drivers_probe`` when the value written is such a bdf
- ``/sys/module/vfio_pci/parameters/enable_sriov``
- ``/sys/module/vfio_iommu_type1/parameters/dma_entry_limit`` (read only when a container
  opens its type1 backend, so it changes no container a process has already set up)

Inside the test VM (``VFIO_CONFORMANCE_VM=1``) every PCI function is allowed;
the attribute list stays the same.

Before the first change to a function its original driver, driver_override,
sriov_numvfs and reset_method (and, once, the original parameters) are
written atomically to a state file, so a crashed run can be undone later with
``restore_from_state_file``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cache_root import cache_root
from .pci_sysfs import (
    BDF_RE,
    DMA_ENTRY_LIMIT,
    DRIVERS_PROBE,
    ENABLE_SRIOV,
    PCI_DEVICES,
    PCI_DRIVERS,
    SysfsTree,
    normalise_path,
)

STATE_VERSION = 1
VM_ENV = "VFIO_CONFORMANCE_VM"
STATE_FILE_ENV = "VFIO_CONFORMANCE_STATE_FILE"

_FUNCTION_ATTRS = ("driver_override", "sriov_numvfs", "reset_method")
_FUNCTION_ATTR_RE = re.compile(re.escape(PCI_DEVICES) + r"/([^/]+)/(" + "|".join(_FUNCTION_ATTRS) + r")\Z")
# The same attributes reached through a PF's virtfnN link.
_VIRTFN_ATTR_RE = re.compile(re.escape(PCI_DEVICES) + r"/([^/]+)/(virtfn\d+)/(" + "|".join(_FUNCTION_ATTRS) + r")\Z")
_BINDING_RE = re.compile(r"/sys/bus/pci/(?:drivers/[^/]+|devices/[^/]+/driver)/(bind|unbind)\Z")
_DRIVER_NAME_RE = re.compile(r"[A-Za-z0-9_.:+-]+\Z")


def default_state_file() -> Path:
    """``$VFIO_CONFORMANCE_STATE_FILE``, else ``restore-state.json`` in the cache root."""
    env = os.environ.get(STATE_FILE_ENV)
    return Path(env) if env else cache_root() / "restore-state.json"


def in_vm() -> bool:
    return os.environ.get(VM_ENV) == "1"


def bool_param(text: str | None) -> bool:
    return (text or "").strip() in ("Y", "y", "1")


class RefusedError(Exception):
    """A sysfs write the kernel backend will not make; the message says why."""


# -- what may be written ------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """What one permitted write can change: a function's ``attr`` ("driver_override",
    "sriov_numvfs", "reset_method", "bind", "unbind", "drivers_probe"), or with
    ``bdf`` None a module parameter ("enable_sriov", "dma_entry_limit")."""

    bdf: str | None
    attr: str


class WritePolicy:
    def __init__(self, tree: SysfsTree, devices: frozenset[str], vm: bool = False):
        self.tree = tree
        self.devices = devices
        self.vm = vm

    def allowed_function(self, bdf: str) -> bool:
        if self.vm:
            return True
        if not BDF_RE.match(bdf):
            return False
        return bdf in self.devices or self.tree.physfn(bdf) in self.devices

    def _need(self, bdf: str, path: str) -> None:
        if not self.allowed_function(bdf):
            named = ", ".join(sorted(self.devices)) or "none"
            raise RefusedError(
                f"{path}: {bdf} is not a PCI function this run may touch (named with --device: {named}; "
                f"VFs of a named PF are included; {VM_ENV}=1 allows all, only inside a disposable VM)"
            )

    def check(self, path: str, value: str) -> Change:
        norm = normalise_path(path)
        if norm is None:
            raise RefusedError(f"{path!r}: not an absolute sysfs path")
        if norm == ENABLE_SRIOV:
            return Change(None, "enable_sriov")
        if norm == DMA_ENTRY_LIMIT:
            return Change(None, "dma_entry_limit")
        m = _FUNCTION_ATTR_RE.match(norm)
        if m:
            self._need(m[1], norm)
            return Change(m[1], m[2])
        m = _VIRTFN_ATTR_RE.match(norm)
        if m:
            self._need(m[1], norm)
            # A VF of a function that may be touched may be touched.  Without the
            # link the write fails with ENOENT; only the PF is recorded then.
            vf = self.tree.link_name(f"{PCI_DEVICES}/{m[1]}/{m[2]}")
            return Change(vf if vf and BDF_RE.match(vf) else m[1], m[3])
        m = _BINDING_RE.match(norm)
        if m or norm == DRIVERS_PROBE:
            target = value.strip()
            if not BDF_RE.match(target):
                raise RefusedError(f"{norm}: the value {value!r} is not one PCI function address")
            self._need(target, norm)
            return Change(target, m[1] if m else "drivers_probe")
        raise RefusedError(
            f"{norm}: not a sysfs file the kernel backend writes (only a named function's "
            f"{'/'.join(_FUNCTION_ATTRS)}, driver bind/unbind/drivers_probe of a named function, "
            f"{ENABLE_SRIOV} and {DMA_ENTRY_LIMIT})"
        )


# -- the record ---------------------------------------------------------------


@dataclass
class FunctionRecord:
    """A function as it was before the run first changed it."""

    bdf: str
    driver: str | None
    driver_override: str | None
    sriov_numvfs: int | None      # None: not an SR-IOV PF
    reset_method: str | None      # None: no reset_method attribute
    physfn: str | None = None     # set on VFs
    virtfns: list[str] = field(default_factory=list)  # a PF's VFs at the time

    @classmethod
    def read(cls, tree: SysfsTree, bdf: str) -> FunctionRecord:
        return cls(
            bdf=bdf, driver=tree.driver(bdf), driver_override=tree.driver_override(bdf),
            sriov_numvfs=tree.sriov_numvfs(bdf), reset_method=tree.reset_method(bdf),
            physfn=tree.physfn(bdf), virtfns=tree.virtfns(bdf),
        )

    def check_names(self) -> str | None:
        """Why this record can't be replayed safely (names a tampered file could smuggle in)."""
        if not BDF_RE.match(self.bdf) or (self.physfn is not None and not BDF_RE.match(self.physfn)):
            return f"{self.bdf!r}: not a PCI function address"
        if self.driver is not None and not _DRIVER_NAME_RE.match(self.driver):
            return f"{self.bdf}: driver name {self.driver!r} is not a plain name"
        return None


@dataclass
class RestoreState:
    sysfs_root: str
    functions: dict[str, FunctionRecord] = field(default_factory=dict)
    # The original enable_sriov text (None: the parameter did not exist), once
    # globals_recorded says it was read.
    enable_sriov: str | None = None
    dma_entry_limit: str | None = None
    globals_recorded: bool = False
    owner_pid: int = 0
    owner_start: str = ""
    failures: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["version"] = STATE_VERSION
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RestoreState:
        if d.get("version") != STATE_VERSION:
            raise ValueError(f"state file version {d.get('version')!r}, expected {STATE_VERSION}")
        functions = d.get("functions", {})
        if not isinstance(functions, dict) or not all(isinstance(r, dict) for r in functions.values()):
            raise ValueError("functions is not an object of records")
        fns = {bdf: FunctionRecord(**rec) for bdf, rec in functions.items()}
        for bdf, rec in fns.items():
            if not isinstance(bdf, str) or not all(
                    isinstance(getattr(rec, n), str | None) for n in ("bdf", "driver", "driver_override",
                                                                      "reset_method", "physfn")):
                raise ValueError(f"record {bdf!r} has a field that is not a string")
            if not isinstance(rec.sriov_numvfs, int | None) or isinstance(rec.sriov_numvfs, bool) \
                    or not isinstance(rec.virtfns, list) or not all(isinstance(v, str) for v in rec.virtfns):
                raise ValueError(f"record {bdf!r}: sriov_numvfs is not a number or virtfns not a list of names")
        enable_sriov, failures = d.get("enable_sriov"), d.get("failures", [])
        limit = d.get("dma_entry_limit")
        if not isinstance(d["sysfs_root"], str) or not isinstance(enable_sriov, str | None) \
                or not isinstance(limit, str | None) or not isinstance(failures, list):
            raise ValueError("sysfs_root, enable_sriov, dma_entry_limit or failures has the wrong type")
        return cls(
            sysfs_root=d["sysfs_root"], functions=fns, enable_sriov=enable_sriov, dma_entry_limit=limit,
            globals_recorded=bool(d.get("globals_recorded")), owner_pid=int(d.get("owner_pid", 0)),
            owner_start=str(d.get("owner_start", "")), failures=[str(f) for f in failures],
        )


def _process_start(pid: int) -> str:
    """The process's start time in clock ticks (/proc/PID/stat field 22): with the pid
    it names one process, whatever pid reuse happened since.  "" if there is none."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return ""
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else ""


def _owner_alive(state: RestoreState) -> bool:
    return state.owner_pid > 0 and _process_start(state.owner_pid) == state.owner_start


class StateFileError(ValueError):
    """A state file whose content is not a record this harness wrote: one line saying why."""


# A state file holds a few records per PCI function: anything larger is not ours.
MAX_STATE_BYTES = 1 << 20


def load_state(path: Path) -> RestoreState | None:
    """The record in ``path`` (None: there is none); StateFileError for any malformed content."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_STATE_BYTES + 1)
    except FileNotFoundError:
        return None
    if len(data) > MAX_STATE_BYTES:
        raise StateFileError(f"larger than {MAX_STATE_BYTES} bytes")
    try:
        d = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise StateFileError(f"not UTF-8 (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise StateFileError(f"not JSON (line {e.lineno}: {e.msg})") from None
    except RecursionError:
        raise StateFileError("not JSON (nested too deep)") from None
    if not isinstance(d, dict):
        kind = {list: "array", str: "string", type(None): "null", bool: "boolean"}.get(type(d), "number")
        raise StateFileError(f"a JSON {kind}, expected an object")
    try:
        return RestoreState.from_json(d)
    except StateFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        what = f"missing {e}" if isinstance(e, KeyError) else str(e)
        raise StateFileError(f"not a restore record ({what})"[:300]) from None


def save_state(path: Path, state: RestoreState) -> None:
    """Write the whole record to a temporary file, fsync it, rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(state.to_json(), f, indent=1, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise processes that use one state file (pytest-xdist workers, a restore command)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(path) + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class StateStore:
    """The record of one backend, mirrored to ``path`` before every change it covers."""

    def __init__(self, path: Path, tree: SysfsTree):
        self.path = path
        self.tree = tree
        self.state: RestoreState | None = None
        # Records taken over from a run that died before restoring.
        self.adopted: list[str] = []

    @property
    def failures(self) -> list[str]:
        return self.state.failures if self.state else []

    def _claim(self) -> RestoreState:
        try:
            old = load_state(self.path)
        except (OSError, ValueError) as e:
            raise RefusedError(f"state file {self.path} is unreadable ({e}); restore by hand, then remove it") from None
        me = RestoreState(sysfs_root=self.tree.root, owner_pid=os.getpid(), owner_start=_process_start(os.getpid()))
        if old is None:
            return me
        if _owner_alive(old) and old.owner_pid != os.getpid():
            raise RefusedError(
                f"state file {self.path} belongs to a run still going (pid {old.owner_pid}): "
                f"two runs must not change PCI functions at once"
            )
        if old.sysfs_root != self.tree.root:
            raise RefusedError(f"state file {self.path} records sysfs under {old.sysfs_root}, not {self.tree.root}")
        # A run died without restoring: its originals predate everything now, keep them.
        self.adopted = sorted(old.functions)
        old.owner_pid, old.owner_start, old.failures = me.owner_pid, me.owner_start, []
        return old

    def record(self, change: Change) -> None:
        """Record what ``change`` may alter, if not already recorded; persist before returning.
        Raises RefusedError when it can't be recorded (then the change must not be made)."""
        bdfs: list[str] = []
        if change.bdf is not None and self.tree.has_function(change.bdf):
            pf = self.tree.physfn(change.bdf)
            bdfs = [pf, change.bdf] if pf else [change.bdf]
        st = self.state
        if st is not None and st.globals_recorded and all(b in st.functions for b in bdfs):
            return
        try:
            with _locked(self.path):
                st = self.state if self.state is not None else self._claim()
                if not st.globals_recorded:
                    st.enable_sriov, st.globals_recorded = self.tree.read(ENABLE_SRIOV), True
                    st.dma_entry_limit = self.tree.read(DMA_ENTRY_LIMIT)
                for b in bdfs:
                    if b not in st.functions:
                        st.functions[b] = FunctionRecord.read(self.tree, b)
                save_state(self.path, st)
                self.state = st
        except OSError as e:
            raise RefusedError(f"could not save the restore record to {self.path}: {e}") from None

    def restore(self) -> list[str]:
        """Put every recorded value back.  On success the state file goes; otherwise
        it stays, with what failed, and the record is kept for another try."""
        if self.state is None:
            return []
        with _locked(self.path):
            failures = restore(self.tree, self.state)
            if not failures:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
                self.state, self.adopted = None, []
                return []
            self.state.failures = failures
            with contextlib.suppress(OSError):
                save_state(self.path, self.state)
            return failures


# -- putting it back ----------------------------------------------------------


def restore(tree: SysfsTree, state: RestoreState) -> list[str]:
    """Restore in a safe order: SR-IOV off where the VF count changed, each PF's and
    plain function's driver_override, reset_method and driver, the VF count, the
    original VFs' own settings, dma_entry_limit, and enable_sriov last.  Returns what is still not
    as recorded (empty on success)."""
    failures: list[str] = []
    recs: list[FunctionRecord] = []
    for r in state.functions.values():
        bad = r.check_names()
        if bad:
            failures.append(f"not replayed: {bad}")
        else:
            recs.append(r)
    param_at_start = tree.read(ENABLE_SRIOV)

    def write(path: str, value: str, quiet: bool = False) -> bool:
        try:
            tree.write(path, value)
            return True
        except OSError as e:
            if not quiet:
                failures.append(f"writing {value.strip()!r} to {path}: {os.strerror(e.errno or 0)}")
            return False

    def set_numvfs(bdf: str, n: int) -> None:
        # vfio_pci_sriov_configure() returns -ENOENT while enable_sriov is N, even for 0.
        if tree.driver(bdf) == "vfio-pci" and tree.exists(ENABLE_SRIOV) and not bool_param(tree.read(ENABLE_SRIOV)):
            write(ENABLE_SRIOV, "Y")
        write(f"{PCI_DEVICES}/{bdf}/sriov_numvfs", str(n))

    pfs = [r for r in recs if r.sriov_numvfs is not None]
    # 1. SR-IOV off where the count is not the original one; the VFs this run made go away.
    for r in pfs:
        now = tree.sriov_numvfs(r.bdf)
        if now and now != r.sriov_numvfs:
            set_numvfs(r.bdf, 0)
    # 2. PFs and plain functions.
    for r in recs:
        if r.physfn is None and tree.has_function(r.bdf):
            _restore_function(tree, r, write)
    # 3. The original VF count, now that each PF is back on its own driver.
    for r in pfs:
        now = tree.sriov_numvfs(r.bdf)
        if now is not None and now != r.sriov_numvfs:
            if now:
                set_numvfs(r.bdf, 0)
            if r.sriov_numvfs:
                set_numvfs(r.bdf, r.sriov_numvfs)
    # 4. VFs that existed before the run (re-created ones come back with defaults).
    for r in recs:
        if r.physfn is not None and tree.has_function(r.bdf):
            _restore_function(tree, r, write)
    # 5. dma_entry_limit, then enable_sriov last: it may have been opened above.
    limit = state.dma_entry_limit if state.globals_recorded else None
    if limit is not None and tree.exists(DMA_ENTRY_LIMIT) and tree.read(DMA_ENTRY_LIMIT) != limit:
        write(DMA_ENTRY_LIMIT, limit)
    target = state.enable_sriov if state.globals_recorded else param_at_start
    if target is not None and tree.exists(ENABLE_SRIOV) and bool_param(tree.read(ENABLE_SRIOV)) != bool_param(target):
        write(ENABLE_SRIOV, target)
    return failures + differences(tree, state, recs)


def _restore_function(tree: SysfsTree, r: FunctionRecord, write: Callable[..., bool]) -> None:
    base = f"{PCI_DEVICES}/{r.bdf}"
    if tree.driver_override(r.bdf) != r.driver_override:
        write(f"{base}/driver_override", r.driver_override or "\n")
    if r.reset_method is not None and tree.reset_method(r.bdf) != r.reset_method:
        write(f"{base}/reset_method", r.reset_method or "\n")
    now = tree.driver(r.bdf)
    if now == r.driver:
        return
    if now is not None:
        write(f"{PCI_DRIVERS}/{now}/unbind", r.bdf)
    if r.driver is not None:
        bound = write(f"{PCI_DRIVERS}/{r.driver}/bind", r.bdf, quiet=True) and tree.driver(r.bdf) == r.driver
        if not bound:
            write(DRIVERS_PROBE, r.bdf)


def differences(tree: SysfsTree, state: RestoreState, recs: list[FunctionRecord]) -> list[str]:
    """What is not as recorded."""
    out: list[str] = []
    for r in recs:
        pf = state.functions.get(r.physfn) if r.physfn else None
        if not tree.has_function(r.bdf):
            # A VF the run created is meant to be gone.
            if r.physfn is None or pf is None or r.bdf in pf.virtfns:
                out.append(f"{r.bdf}: no longer present")
            continue
        now = FunctionRecord.read(tree, r.bdf)
        for name in ("driver", "driver_override", "sriov_numvfs", "reset_method"):
            was, is_ = getattr(r, name), getattr(now, name)
            if name == "reset_method" and was is None:
                continue
            if was != is_:
                out.append(f"{r.bdf}: {name} is {is_!r}, was {was!r}")
    if state.globals_recorded and state.enable_sriov is not None:
        now_param = tree.read(ENABLE_SRIOV)
        if bool_param(now_param) != bool_param(state.enable_sriov):
            out.append(f"vfio_pci enable_sriov is {now_param!r}, was {state.enable_sriov!r}")
    if state.globals_recorded and state.dma_entry_limit is not None:
        now_limit = tree.read(DMA_ENTRY_LIMIT)
        if now_limit != state.dma_entry_limit:
            out.append(f"vfio_iommu_type1 dma_entry_limit is {now_limit!r}, was {state.dma_entry_limit!r}")
    return out


def restore_from_state_file(path: str | os.PathLike[str] | None = None, root: str | None = None) -> list[str]:
    """Replay a state file a run left behind (it crashed, or a restore failed).
    Returns what could not be restored; an empty list means all is back and the
    file is gone.  ``root`` overrides the sysfs root recorded in the file."""
    p = Path(path) if path is not None else default_state_file()
    with _locked(p):
        try:
            state = load_state(p)
        except ValueError as e:
            return [f"{p}: unreadable state file ({e})"]
        except OSError as e:
            return [f"{p}: cannot read the state file ({e.strerror})"]
        if state is None:
            return []
        if _owner_alive(state) and state.owner_pid != os.getpid():
            return [f"{p}: the run that owns it (pid {state.owner_pid}) is still going; stop it first"]
        failures = restore(SysfsTree(root or state.sysfs_root), state)
        if failures:
            state.failures = failures
            save_state(p, state)
        else:
            p.unlink()
        return failures
