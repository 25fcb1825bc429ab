"""The kernel backend's sysfs side against a fake /sys in a temporary directory:
topology discovery, the host-safety allowlist, the restore record and reset().

``FakePci`` lays out /sys/bus/pci like the kernel does (device directories
under /sys/devices, symlinks for driver, iommu_group, physfn, virtfnN) and
stands in for the PCI core when a file is written: bind/unbind move the driver
link, drivers_probe binds driver_override or the native driver, sriov_numvfs
creates and removes VFs, and it fails the way the kernel does (EBUSY, ENODEV,
ENOENT when vfio-pci's enable_sriov is N, ...).
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.backends import sysfs_state
from harness.backends.base import PciFunction
from harness.backends.kernel import KernelBackend, RestoreError
from harness.backends.pci_sysfs import SysfsTree, fill_hardware_fields
from harness.backends.sysfs_state import restore_from_state_file

E1000 = "0000:00:02.0"
NVME = "0000:00:03.0"
LPC, AHCI = "0000:00:1f.0", "0000:00:1f.2"
OTHER = "0000:00:04.0"  # a function nobody named: the host's own NIC, say


class FakePci:
    def __init__(self, root: Path):
        self.root = root
        self.sys = root / "sys"
        self.devdir = self.sys / "devices" / "pci0000:00"
        for d in ("bus/pci/devices", "bus/pci/drivers", "kernel/iommu_groups", "module/vfio_pci/parameters"):
            (self.sys / d).mkdir(parents=True)
        (self.devdir).mkdir(parents=True)
        (self.sys / "bus/pci/drivers_probe").write_text("")
        (self.sys / "module/vfio_pci/parameters/enable_sriov").write_text("N\n")
        self.native: dict[str, str | None] = {}
        self.next_cdev = 0
        self.next_group = 100
        self.writes: list[tuple[str, str]] = []
        self.on_write = None  # called before each write takes effect

    # -- layout ---------------------------------------------------------------
    def add_driver(self, name: str) -> None:
        d = self.sys / "bus/pci/drivers" / name
        d.mkdir()
        (d / "bind").write_text("")
        (d / "unbind").write_text("")

    def add_function(self, bdf: str, vendor: int, device: int, cls: int, group: int | None, native: str | None,
                     pcie: bool = True, totalvfs: int = 0, override: str | None = None,
                     physfn: str | None = None) -> None:
        d = self.devdir / bdf
        d.mkdir()
        (d / "vendor").write_text(f"0x{vendor:04x}\n")
        (d / "device").write_text(f"0x{device:04x}\n")
        (d / "class").write_text(f"0x{cls:06x}\n")
        (d / "config").write_bytes(b"\0" * (4096 if pcie else 256))
        (d / "resource").write_text(
            "0x00000000febc0000 0x00000000febdffff 0x0000000000040200\n"
            + "0x0000000000000000 0x0000000000000000 0x0000000000000000\n" * 12
        )
        (d / "driver_override").write_text((override or "(null)") + "\n")
        (d / "reset_method").write_text("flr bus\n")
        (d / "remove").write_text("")
        if totalvfs:
            (d / "sriov_totalvfs").write_text(f"{totalvfs}\n")
            (d / "sriov_numvfs").write_text("0\n")
        if physfn:
            (d / "physfn").symlink_to(f"../{physfn}")
        if group is not None:
            g = self.sys / "kernel/iommu_groups" / str(group)
            (g / "devices").mkdir(parents=True, exist_ok=True)
            (g / "devices" / bdf).symlink_to(f"../../../../devices/pci0000:00/{bdf}")
            (d / "iommu_group").symlink_to(f"../../../kernel/iommu_groups/{group}")
        (self.sys / "bus/pci/devices" / bdf).symlink_to(f"../../../devices/pci0000:00/{bdf}")
        self.native[bdf] = native
        if native:
            self.attach(bdf, native)

    # -- state ----------------------------------------------------------------
    def dev(self, bdf: str) -> Path:
        return self.devdir / bdf

    def driver(self, bdf: str) -> str | None:
        link = self.dev(bdf) / "driver"
        return os.path.basename(os.readlink(link)) if link.is_symlink() else None

    def read(self, bdf: str, attr: str) -> str:
        return (self.dev(bdf) / attr).read_text().strip()

    def attach(self, bdf: str, drv: str) -> None:
        (self.dev(bdf) / "driver").symlink_to(f"../../../bus/pci/drivers/{drv}")
        if drv == "vfio-pci":
            (self.dev(bdf) / "vfio-dev" / f"vfio{self.next_cdev}").mkdir(parents=True)
            self.next_cdev += 1

    def detach(self, bdf: str) -> None:
        if self.driver(bdf) is None:
            return
        self.set_vfs(bdf, 0)  # a driver's remove() disables SR-IOV
        (self.dev(bdf) / "driver").unlink()
        vd = self.dev(bdf) / "vfio-dev"
        if vd.exists():
            for e in vd.iterdir():
                e.rmdir()
            vd.rmdir()

    def set_vfs(self, pf: str, n: int) -> None:
        d = self.dev(pf)
        if not (d / "sriov_numvfs").exists():
            return
        for link in sorted(d.glob("virtfn*")):
            vf = os.path.basename(os.readlink(link))
            self.detach(vf)
            link.unlink()
            (self.sys / "bus/pci/devices" / vf).unlink()
            group = self.dev(vf) / "iommu_group"
            shutil.rmtree(group.resolve())
            shutil.rmtree(self.dev(vf))
        for i in range(n):
            vf = pf[:-1] + str(i + 1)
            vf_override = "vfio-pci" if self.driver(pf) == "vfio-pci" else None
            self.add_function(vf, 0x1B36, 0x0011, 0x010802, self.next_group, None, override=vf_override, physfn=pf)
            self.next_group += 1
            (d / f"virtfn{i}").symlink_to(f"../{vf}")
            self.probe(vf)
        (d / "sriov_numvfs").write_text(f"{n}\n")

    def probe(self, bdf: str) -> None:
        if self.driver(bdf) is not None:
            return
        override = self.read(bdf, "driver_override")
        drv = override if override != "(null)" else self.native.get(bdf)
        if drv and (self.sys / "bus/pci/drivers" / drv).is_dir():
            self.attach(bdf, drv)

    # -- the PCI core's store() handlers ----------------------------------------
    def write(self, tree: SysfsTree, path: str, value: str) -> int:
        p = Path(tree.path(path))
        if not p.exists():
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))
        if self.on_write:
            self.on_write(path, value)
        self.writes.append((path, value))
        real = p.resolve()
        name, v = real.name, value.strip()
        if name in ("bind", "unbind", "drivers_probe"):
            if not self.dev(v).is_dir():
                raise OSError(errno.ENODEV, "no such device")
            if name == "drivers_probe":
                self.probe(v)
            elif name == "unbind":
                if self.driver(v) != real.parent.name:
                    raise OSError(errno.ENODEV, "not bound to this driver")
                self.detach(v)
            else:
                override = self.read(v, "driver_override")
                if self.driver(v) is not None:
                    raise OSError(errno.EBUSY, "already bound")
                if real.parent.name != (override if override != "(null)" else self.native[v]):
                    raise OSError(errno.ENODEV, "driver does not match")
                self.attach(v, real.parent.name)
        elif name == "sriov_numvfs":
            pf = real.parent.name
            drv = self.driver(pf)
            if drv is None or (drv == "vfio-pci" and self.sys_param() != "Y"):
                raise OSError(errno.ENOENT, "no sriov_configure")
            cur, n = int(self.read(pf, "sriov_numvfs")), int(v)
            if n > int(self.read(pf, "sriov_totalvfs")):
                raise OSError(errno.ERANGE, "too many")
            if cur and n and cur != n:
                raise OSError(errno.EBUSY, "VFs already enabled")
            self.set_vfs(pf, n)
        elif name == "driver_override":
            real.write_text((v or "(null)") + "\n")
        else:
            real.write_text(v + "\n")
        return len(value)

    def sys_param(self) -> str:
        return (self.sys / "module/vfio_pci/parameters/enable_sriov").read_text().strip()

    def snapshot(self) -> dict[str, str]:
        """Every file's content and every link's target under /sys."""
        out = {}
        for dirpath, dirnames, filenames in os.walk(self.sys):
            for n in dirnames + filenames:
                p = os.path.join(dirpath, n)
                if os.path.islink(p):
                    out[p] = "-> " + os.readlink(p)
                elif os.path.isfile(p):
                    out[p] = Path(p).read_text(errors="replace")
        return out


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakePci:
    monkeypatch.delenv("VFIO_CONFORMANCE_VM", raising=False)
    f = FakePci(tmp_path / "root")
    for drv in ("vfio-pci", "e1000", "nvme", "ahci", "lpc_ich"):
        f.add_driver(drv)
    f.add_function(E1000, 0x8086, 0x100E, 0x020000, 1, "e1000", pcie=False)
    f.add_function(NVME, 0x1B36, 0x0010, 0x010802, 2, "nvme", totalvfs=3)
    f.add_function(OTHER, 0x8086, 0x10D3, 0x020000, 4, "e1000")
    f.add_function(LPC, 0x8086, 0x2918, 0x060100, 3, None, pcie=False)
    f.add_function(AHCI, 0x8086, 0x2922, 0x010601, 3, "ahci", pcie=False)
    f.add_function("0000:00:05.0", 0x1234, 0x1111, 0x030000, None, None)
    monkeypatch.setattr(SysfsTree, "write", lambda tree, path, value: f.write(tree, path, value))
    return f


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "restore-state.json"


@pytest.fixture
def kb(fake: FakePci, state_path: Path) -> Iterator[KernelBackend]:
    b = KernelBackend(devices=(E1000, NVME), root=str(fake.root), state_file=state_path)
    yield b


def bind_to_vfio(kb: KernelBackend, bdf: str) -> None:
    """What a case does to put a function on vfio-pci (docs/measured.md)."""
    drv = kb.tree.driver(bdf)
    assert kb.sysfs_write(f"/sys/bus/pci/devices/{bdf}/driver_override", "vfio-pci").ok, kb.last_refusal
    if drv:
        assert kb.sysfs_write(f"/sys/bus/pci/drivers/{drv}/unbind", bdf).ok, kb.last_refusal
    assert kb.sysfs_write("/sys/bus/pci/drivers_probe", bdf).ok, kb.last_refusal


# -- topology -------------------------------------------------------------------


def test_topology_from_sysfs(kb: KernelBackend, fake: FakePci) -> None:
    topo = kb.topology()
    assert sorted(topo.functions) == sorted([E1000, NVME, OTHER, LPC, AHCI, "0000:00:05.0"])
    e = topo.functions[E1000]
    assert (e.vendor, e.device, e.iommu_group, e.driver, e.driver_override) == (0x8086, 0x100E, 1, "e1000", None)
    assert (e.is_pcie, e.name, e.cdev, e.physfn, e.sriov_totalvfs) == (False, "e1000", None, None, 0)
    n = topo.functions[NVME]
    assert (n.sriov_totalvfs, n.sriov_numvfs, n.is_pcie, n.is_pf) == (3, 0, True, True)
    lpc = topo.functions[LPC]
    assert (lpc.driver, lpc.name) == (None, "isa-bridge")
    assert topo.functions["0000:00:05.0"].iommu_group is None
    assert [f.bdf for f in topo.siblings(LPC)] == [AHCI]


def test_topology_sees_vfio_cdev_and_vfs(kb: KernelBackend, fake: FakePci) -> None:
    bind_to_vfio(kb, NVME)
    assert kb.sysfs_write("/sys/module/vfio_pci/parameters/enable_sriov", "Y").ok
    assert kb.sysfs_write(f"/sys/bus/pci/devices/{NVME}/sriov_numvfs", "2").ok
    topo = kb.topology()
    pf = topo.functions[NVME]
    assert (pf.driver, pf.driver_override, pf.cdev, pf.sriov_numvfs) == ("vfio-pci", "vfio-pci", "vfio0", 2)
    vf = topo.functions["0000:00:03.1"]
    assert (vf.physfn, vf.driver, vf.is_vf, vf.cdev) == (NVME, "vfio-pci", True, "vfio1")
    kb.reset()


def test_bar_sizes_from_resource(kb: KernelBackend) -> None:
    assert kb.tree.bar_sizes(E1000) == (0x20000, 0, 0, 0, 0, 0)


def test_hardware_fields_are_filled_when_pcifunction_has_them(kb: KernelBackend) -> None:
    @dataclasses.dataclass
    class Described(PciFunction):
        bar_sizes: tuple[int, ...] = ()
        class_code: int = 0

    plain = kb.topology().functions[E1000]
    f = fill_hardware_fields(Described(**dataclasses.asdict(plain)), kb.tree, E1000)
    assert (f.bar_sizes, f.class_code, f.vendor) == ((0x20000, 0, 0, 0, 0, 0), 0x020000, 0x8086)
    assert fill_hardware_fields(plain, kb.tree, E1000) == plain


# -- refusals -------------------------------------------------------------------


@pytest.mark.parametrize("path,value", [
    (f"/sys/bus/pci/devices/{OTHER}/driver_override", "vfio-pci"),       # not named
    ("/sys/bus/pci/drivers/e1000/unbind", OTHER),                        # value not named
    (f"/sys/bus/pci/devices/{E1000}/driver/unbind", OTHER),               # path names ours, value does not
    ("/sys/bus/pci/drivers_probe", OTHER),
    ("/sys/bus/pci/drivers/vfio-pci/bind", f"{E1000} {OTHER}"),           # not one address
    (f"/sys/bus/pci/devices/{E1000}/remove", "1"),                        # not an allowed attribute
    ("/sys/bus/pci/rescan", "1"),
    ("/sys/bus/pci/drivers/vfio-pci/new_id", "8086 10d3"),                # would grab every such NIC
    (f"/sys/bus/pci/devices/{E1000}/../{OTHER}/driver_override", "vfio-pci"),
    (f"sys/bus/pci/devices/{E1000}/driver_override", "vfio-pci"),         # relative
    ("/sys/module/vfio_pci/parameters/ids", "8086:10d3"),
    ("/proc/sys/kernel/panic", "1"),
])
def test_refused_writes_touch_nothing(kb: KernelBackend, fake: FakePci, state_path: Path, path: str,
                                      value: str) -> None:
    before = fake.snapshot()
    res = kb.sysfs_write(path, value)
    assert (res.ret, res.errno) == (-1, errno.EPERM)
    assert kb.last_refusal.startswith("vfio-conformance refused sysfs_write")
    assert kb.last_error is not None and "refused" in kb.last_error.where
    assert fake.snapshot() == before
    assert fake.writes == []
    assert not state_path.exists()


def test_refusal_says_what_is_allowed(kb: KernelBackend) -> None:
    kb.sysfs_write(f"/sys/bus/pci/devices/{OTHER}/driver_override", "vfio-pci")
    assert OTHER in kb.last_refusal and E1000 in kb.last_refusal and "--device" in kb.last_refusal


def test_a_vf_of_a_named_pf_is_allowed_a_vf_of_another_is_not(fake: FakePci, tmp_path: Path) -> None:
    named_pf = KernelBackend(devices=(NVME,), root=str(fake.root), state_file=tmp_path / "a.json")
    other = KernelBackend(devices=(E1000,), root=str(fake.root), state_file=tmp_path / "b.json")
    bind_to_vfio(named_pf, NVME)
    assert named_pf.sysfs_write("/sys/module/vfio_pci/parameters/enable_sriov", "Y").ok
    assert named_pf.sysfs_write(f"/sys/bus/pci/devices/{NVME}/sriov_numvfs", "1").ok
    vf_attr = "/sys/bus/pci/devices/0000:00:03.1/reset_method"
    assert other.sysfs_write(vf_attr, "").errno == errno.EPERM
    assert "0000:00:03.1 is not a PCI function this run may touch" in other.last_refusal
    assert named_pf.sysfs_write(vf_attr, "").ok
    assert fake.read("0000:00:03.1", "reset_method") == ""
    named_pf.reset()


def test_a_vf_through_its_pfs_virtfn_link(fake: FakePci, tmp_path: Path) -> None:
    kb = KernelBackend(devices=(NVME,), root=str(fake.root), state_file=tmp_path / "a.json")
    other = KernelBackend(devices=(E1000,), root=str(fake.root), state_file=tmp_path / "b.json")
    fake.set_vfs(NVME, 2)
    path = f"/sys/bus/pci/devices/{NVME}/virtfn1/driver_override"
    assert kb.sysfs_write(f"/sys/bus/pci/devices/{NVME}/virtfn2/driver_override", "x").errno == errno.ENOENT
    assert other.sysfs_write(path, "vfio-pci").errno == errno.EPERM
    assert kb.may_touch("0000:00:03.2") and not other.may_touch("0000:00:03.2")
    assert kb.sysfs_write(path, "vfio-pci").ok
    assert kb.sysfs_read(path).data == b"vfio-pci\n"
    assert json.loads((tmp_path / "a.json").read_text())["functions"]["0000:00:03.2"]["driver_override"] is None
    kb.reset()
    assert fake.read("0000:00:03.2", "driver_override") == "(null)"
    assert fake.read(NVME, "sriov_numvfs") == "2"


def test_vm_mode_allows_every_function_but_not_every_file(fake: FakePci, state_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VFIO_CONFORMANCE_VM", "1")
    kb = KernelBackend(root=str(fake.root), state_file=state_path)
    bind_to_vfio(kb, OTHER)
    assert kb.sysfs_write(f"/sys/bus/pci/devices/{OTHER}/remove", "1").errno == errno.EPERM
    kb.reset()
    assert fake.driver(OTHER) == "e1000"


def test_open_is_limited_to_the_named_functions_nodes(kb: KernelBackend, fake: FakePci) -> None:
    dev = fake.root / "dev"
    (dev / "vfio/devices").mkdir(parents=True)
    for n in ("vfio/vfio", "vfio/1", "vfio/4", "vfio/devices/vfio0", "vfio/devices/vfio1", "iommu", "mem"):
        (dev / n).write_text("")
    bind_to_vfio(kb, E1000)   # vfio0
    bind_to_vfio_unchecked(fake, OTHER)  # vfio1, as if the host had it on vfio-pci for a VM
    for ok in ("/dev/iommu", "/dev/vfio/vfio", "/dev/vfio/1", "/dev/vfio/devices/vfio0"):
        assert kb.open(ok).ok, (ok, kb.last_refusal)
    for bad in ("/dev/vfio/4", "/dev/vfio/devices/vfio1", "/dev/mem", f"/sys/bus/pci/devices/{E1000}/driver_override"):
        res = kb.open(bad)
        assert res.errno == errno.EPERM, bad
    assert kb.open("/dev/vfio/devices/vfio7", os.O_RDWR | os.O_CREAT).errno == errno.EPERM
    assert not (dev / "vfio/devices/vfio7").exists()
    kb.reset()


def bind_to_vfio_unchecked(fake: FakePci, bdf: str) -> None:
    (fake.dev(bdf) / "driver_override").write_text("vfio-pci\n")
    fake.detach(bdf)
    fake.probe(bdf)


# -- the record -----------------------------------------------------------------


def test_the_original_is_on_disk_before_the_first_change(kb: KernelBackend, fake: FakePci,
                                                         state_path: Path) -> None:
    seen: list[dict] = []
    fake.on_write = lambda path, value: seen.append(json.loads(state_path.read_text()))
    bind_to_vfio(kb, E1000)
    first = seen[0]
    rec = first["functions"][E1000]
    assert (rec["driver"], rec["driver_override"], rec["sriov_numvfs"], rec["reset_method"]) == (
        "e1000", None, None, "flr bus")
    assert first["enable_sriov"] == "N" and first["globals_recorded"] is True
    assert first["owner_pid"] == os.getpid()
    # Later changes to the same function do not overwrite the original.
    assert all(s["functions"][E1000]["driver"] == "e1000" for s in seen)
    assert json.loads(state_path.read_text())["functions"][E1000]["driver"] == "e1000"


def test_a_vf_change_records_its_pf_first(kb: KernelBackend, fake: FakePci, state_path: Path) -> None:
    bind_to_vfio(kb, NVME)
    kb.sysfs_write("/sys/module/vfio_pci/parameters/enable_sriov", "Y")
    kb.sysfs_write(f"/sys/bus/pci/devices/{NVME}/sriov_numvfs", "2")
    assert kb.sysfs_write("/sys/bus/pci/devices/0000:00:03.2/driver_override", "\n").ok
    recs = json.loads(state_path.read_text())["functions"]
    assert sorted(recs) == [NVME, "0000:00:03.2"]
    assert recs[NVME]["virtfns"] == [] and recs["0000:00:03.2"]["physfn"] == NVME
    kb.reset()


def test_kernel_errors_pass_through_after_recording(kb: KernelBackend, fake: FakePci, state_path: Path) -> None:
    res = kb.sysfs_write(f"/sys/bus/pci/devices/{NVME}/sriov_numvfs", "9")
    assert (res.ret, res.errno) == (-1, errno.ERANGE)
    assert kb.sysfs_write("/sys/bus/pci/drivers/vfio-pci/bind", E1000).errno == errno.EBUSY
    kb.reset()
    assert not state_path.exists()


# -- reset() --------------------------------------------------------------------


def test_reset_restores_driver_and_override(kb: KernelBackend, fake: FakePci, state_path: Path) -> None:
    before = fake.snapshot()
    bind_to_vfio(kb, E1000)
    assert kb.sysfs_write(f"/sys/bus/pci/devices/{E1000}/reset_method", "").ok
    assert fake.driver(E1000) == "vfio-pci" and state_path.exists()
    kb.reset()
    assert fake.driver(E1000) == "e1000"
    assert fake.read(E1000, "driver_override") == "(null)"
    assert fake.read(E1000, "reset_method") == "flr bus"
    assert not state_path.exists()
    assert fake.snapshot() == before
    kb.reset()  # nothing recorded: nothing written
    assert fake.snapshot() == before


def test_dma_entry_limit_is_recorded_and_put_back(kb: KernelBackend, fake: FakePci, state_path: Path) -> None:
    params = fake.sys / "module/vfio_iommu_type1/parameters"
    params.mkdir(parents=True)
    (params / "dma_entry_limit").write_text("65535\n")
    assert kb.sysfs_write("/sys/module/vfio_iommu_type1/parameters/dma_entry_limit", "1").ok
    assert (params / "dma_entry_limit").read_text() == "1\n"
    assert json.loads(state_path.read_text())["dma_entry_limit"] == "65535"
    kb.reset()
    assert (params / "dma_entry_limit").read_text() == "65535\n"
    assert not state_path.exists()


def test_reset_restores_sriov_in_a_safe_order(kb: KernelBackend, fake: FakePci, state_path: Path) -> None:
    before = fake.snapshot()
    bind_to_vfio(kb, NVME)
    assert kb.sysfs_write("/sys/module/vfio_pci/parameters/enable_sriov", "Y").ok
    assert kb.sysfs_write(f"/sys/bus/pci/devices/{NVME}/sriov_numvfs", "2").ok
    assert kb.sysfs_write("/sys/bus/pci/devices/0000:00:03.1/driver_override", "\n").ok
    # With enable_sriov N, vfio-pci refuses even sriov_numvfs=0: restore must open it first.
    assert kb.sysfs_write("/sys/module/vfio_pci/parameters/enable_sriov", "N").ok
    assert fake.read(NVME, "sriov_numvfs") == "2"
    start = len(fake.writes)
    kb.reset()
    assert not state_path.exists()
    assert fake.read(NVME, "sriov_numvfs") == "0" and fake.driver(NVME) == "nvme"
    assert fake.sys_param() == "N"
    assert not fake.dev("0000:00:03.1").exists()
    assert fake.snapshot() == before
    during = [(p.rsplit("/", 1)[1], v) for p, v in fake.writes[start:]]
    assert during.index(("enable_sriov", "Y")) < during.index(("sriov_numvfs", "0"))
    assert during.index(("sriov_numvfs", "0")) < during.index(("unbind", NVME)) < during.index(("bind", NVME))
    assert during[-1] == ("enable_sriov", "N")


def test_reset_brings_back_vfs_that_existed_and_their_settings(fake: FakePci, state_path: Path) -> None:
    # The host had the PF on vfio-pci with two VFs, one VF unbound.
    bind_to_vfio_unchecked(fake, NVME)
    (fake.sys / "module/vfio_pci/parameters/enable_sriov").write_text("Y\n")
    fake.set_vfs(NVME, 2)
    vf1, vf2 = "0000:00:03.1", "0000:00:03.2"
    fake.detach(vf2)
    (fake.dev(vf2) / "driver_override").write_text("(null)\n")
    kb = KernelBackend(devices=(NVME,), root=str(fake.root), state_file=state_path)
    assert kb.sysfs_write(f"/sys/bus/pci/devices/{vf2}/driver_override", "vfio-pci").ok
    assert kb.sysfs_write("/sys/bus/pci/drivers_probe", vf2).ok
    assert kb.sysfs_write(f"/sys/bus/pci/devices/{NVME}/sriov_numvfs", "0").ok
    assert kb.sysfs_write(f"/sys/bus/pci/devices/{NVME}/sriov_numvfs", "3").ok
    assert kb.sysfs_write("/sys/module/vfio_pci/parameters/enable_sriov", "N").ok
    kb.reset()
    assert not state_path.exists(), kb.store.failures
    assert fake.read(NVME, "sriov_numvfs") == "2" and fake.sys_param() == "Y"
    assert fake.driver(vf1) == "vfio-pci" and fake.driver(vf2) is None
    assert fake.read(vf2, "driver_override") == "(null)"


def test_reset_rebinds_a_pf_before_restoring_its_vf_count(fake: FakePci, state_path: Path) -> None:
    # The PF had VFs on its own driver; moving it to vfio-pci drops them.
    fake.set_vfs(NVME, 2)
    kb = KernelBackend(devices=(NVME,), root=str(fake.root), state_file=state_path)
    bind_to_vfio(kb, NVME)
    assert fake.read(NVME, "sriov_numvfs") == "0"
    kb.reset()
    assert not state_path.exists(), kb.store.failures
    assert fake.driver(NVME) == "nvme" and fake.read(NVME, "sriov_numvfs") == "2"


def test_a_failed_restore_keeps_the_record_and_stops_further_changes(kb: KernelBackend, fake: FakePci,
                                                                     state_path: Path) -> None:
    bind_to_vfio(kb, E1000)
    # The original driver went away (module unloaded): e1000 can't be bound back.
    drv = fake.sys / "bus/pci/drivers/e1000"
    for f in drv.iterdir():
        f.unlink()
    drv.rmdir()
    fake.native[E1000] = None
    with pytest.raises(RestoreError, match="driver is None, was 'e1000'"):
        kb.reset()
    left = json.loads(state_path.read_text())
    assert left["functions"][E1000]["driver"] == "e1000"
    assert any("driver is None" in f for f in left["failures"])
    res = kb.sysfs_write(f"/sys/bus/pci/devices/{NVME}/driver_override", "vfio-pci")
    assert res.errno == errno.EPERM and "earlier restore failed" in kb.last_refusal
    # Once the driver is back, the next reset finishes the job.
    fake.add_driver("e1000")
    fake.native[E1000] = "e1000"
    kb.reset()
    assert fake.driver(E1000) == "e1000" and not state_path.exists()


# -- a crashed run ----------------------------------------------------------------


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _crash(state_path: Path, pid: int) -> None:
    """What the file looks like after its run died: owned by a process that is gone."""
    d = json.loads(state_path.read_text())
    d["owner_pid"] = pid
    state_path.write_text(json.dumps(d))


def test_restore_from_a_state_file_left_behind(fake: FakePci, state_path: Path) -> None:
    before = fake.snapshot()
    kb = KernelBackend(devices=(E1000, NVME), root=str(fake.root), state_file=state_path)
    bind_to_vfio(kb, E1000)
    bind_to_vfio(kb, NVME)
    kb.sysfs_write("/sys/module/vfio_pci/parameters/enable_sriov", "Y")
    kb.sysfs_write(f"/sys/bus/pci/devices/{NVME}/sriov_numvfs", "3")
    del kb  # the run dies: no reset()
    _crash(state_path, _dead_pid())
    assert restore_from_state_file(state_path) == []
    assert fake.snapshot() == before
    assert not state_path.exists()
    assert restore_from_state_file(state_path) == []  # nothing left: nothing to do


def test_restore_refuses_while_the_owner_runs(fake: FakePci, state_path: Path) -> None:
    kb = KernelBackend(devices=(E1000,), root=str(fake.root), state_file=state_path)
    bind_to_vfio(kb, E1000)
    _crash(state_path, os.getppid())
    d = json.loads(state_path.read_text())
    d["owner_start"] = sysfs_state._process_start(os.getppid())
    state_path.write_text(json.dumps(d))
    failures = restore_from_state_file(state_path)
    assert failures and "still going" in failures[0]
    assert fake.driver(E1000) == "vfio-pci"
    # Nor may a second backend start changing things under it.
    other = KernelBackend(devices=(NVME,), root=str(fake.root), state_file=state_path)
    before = fake.snapshot()
    res = other.sysfs_write(f"/sys/bus/pci/devices/{NVME}/driver_override", "vfio-pci")
    assert res.errno == errno.EPERM and "still going" in other.last_refusal
    assert fake.snapshot() == before


def test_a_new_run_adopts_a_dead_runs_record(fake: FakePci, state_path: Path) -> None:
    before = fake.snapshot()
    crashed = KernelBackend(devices=(E1000,), root=str(fake.root), state_file=state_path)
    bind_to_vfio(crashed, E1000)
    _crash(state_path, _dead_pid())
    kb = KernelBackend(devices=(E1000, NVME), root=str(fake.root), state_file=state_path)
    bind_to_vfio(kb, NVME)
    bind_to_vfio(kb, E1000)  # already on vfio-pci: the crashed run's original stands
    assert kb.store.adopted == [E1000]
    assert json.loads(state_path.read_text())["functions"][E1000]["driver"] == "e1000"
    kb.reset()
    assert fake.snapshot() == before and not state_path.exists()


def test_an_unreadable_state_file_stops_changes(kb: KernelBackend, fake: FakePci, state_path: Path) -> None:
    state_path.parent.mkdir(parents=True)
    state_path.write_text("{not json")
    before = fake.snapshot()
    res = kb.sysfs_write(f"/sys/bus/pci/devices/{E1000}/driver_override", "vfio-pci")
    assert res.errno == errno.EPERM and "unreadable" in kb.last_refusal
    assert fake.snapshot() == before
    assert state_path.read_text() == "{not json"


def test_a_tampered_record_is_not_replayed(fake: FakePci, state_path: Path) -> None:
    kb = KernelBackend(devices=(E1000,), root=str(fake.root), state_file=state_path)
    bind_to_vfio(kb, E1000)
    d = json.loads(state_path.read_text())
    d["functions"][E1000]["driver"] = "../../../../module/vfio_pci/parameters"
    d["owner_pid"] = _dead_pid()
    state_path.write_text(json.dumps(d))
    failures = restore_from_state_file(state_path)
    assert failures and "not a plain name" in failures[0]
    assert fake.sys_param() == "N"
    assert state_path.exists()


def test_no_change_without_a_saved_record(fake: FakePci, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    kb = KernelBackend(devices=(E1000,), root=str(fake.root), state_file=blocker / "state.json")
    before = fake.snapshot()
    res = kb.sysfs_write(f"/sys/bus/pci/devices/{E1000}/driver_override", "vfio-pci")
    assert res.errno == errno.EPERM and "could not save the restore record" in kb.last_refusal
    assert fake.snapshot() == before


def test_sysfs_read(kb: KernelBackend) -> None:
    res = kb.sysfs_read(f"/sys/bus/pci/devices/{NVME}/sriov_totalvfs")
    assert (res.ret, res.data) == (2, b"3\n")
    assert kb.sysfs_read("/sys/bus/pci/devices/0000:00:09.0/vendor").errno == errno.ENOENT
    assert kb.sysfs_read("/etc/shadow").errno == errno.EPERM
    assert kb.path_exists(f"/sys/bus/pci/devices/{E1000}/driver")
    assert not kb.path_exists("/dev/iommu")


def test_an_original_vf_that_does_not_come_back_is_a_failure(fake: FakePci) -> None:
    tree = SysfsTree(str(fake.root))
    pf = sysfs_state.FunctionRecord(NVME, "nvme", None, 2, "flr bus", virtfns=["0000:00:03.1", "0000:00:03.2"])
    gone = sysfs_state.FunctionRecord("0000:00:03.2", None, None, None, "flr bus", physfn=NVME)
    made = sysfs_state.FunctionRecord("0000:00:03.5", None, None, None, "flr bus", physfn=NVME)
    state = sysfs_state.RestoreState(str(fake.root), {r.bdf: r for r in (pf, gone, made)})
    out = sysfs_state.differences(tree, state, [pf, gone, made])
    assert out == [f"{NVME}: sriov_numvfs is 0, was 2", "0000:00:03.2: no longer present"]


def test_functions_behind_a_bridge_can_take_a_bus_reset(tmp_path: Path) -> None:
    from harness.backends.pci_sysfs import SysfsTree, _described

    sys_ = tmp_path / "sys"
    (sys_ / "bus/pci/devices").mkdir(parents=True)
    layout = {"0000:00:02.0": "pci0000:00/0000:00:02.0", "0000:00:04.0": "pci0000:00/0000:00:04.0",
              "0000:01:01.0": "pci0000:00/0000:00:04.0/0000:01:01.0",
              "0000:01:02.0": "pci0000:00/0000:00:04.0/0000:01:02.0"}
    for bdf, rel in layout.items():
        (sys_ / "devices" / rel).mkdir(parents=True)
        (sys_ / "bus/pci/devices" / bdf).symlink_to(f"../../../devices/{rel}")
    tree = SysfsTree(str(tmp_path))
    assert tree.upstream_bridge("0000:00:02.0") is None
    assert tree.upstream_bridge("0000:01:02.0") == "0000:00:04.0"
    fn = PciFunction("0000:01:01.0", 0x8086, 0x100E, iommu_group=4)
    assert _described(tree, "0000:01:01.0", fn)["hot_reset_functions"] == ("0000:01:01.0", "0000:01:02.0")
    assert "hot_reset_functions" not in _described(tree, "0000:00:02.0", fn)


def test_get_device_fd_only_for_a_named_device(kb: KernelBackend) -> None:
    """VFIO_GROUP_GET_DEVICE_FD opens and resets the device it names: a function not named with
    --device is refused before the kernel sees it; a named one (and a name that is no PCI
    address) goes to the kernel, here /dev/null, which has no such ioctl."""
    from harness.uapi.vfio import VFIO_GROUP_GET_DEVICE_FD

    fd = kb.eventfd(0).ret
    refused = kb.ioctl(fd, VFIO_GROUP_GET_DEVICE_FD, f"{OTHER} vf_token=x\0".encode())
    assert refused.errno_name == "EPERM" and "not named with --device" in kb.last_refusal
    for name in (E1000, "not-a-device"):
        res = kb.ioctl(fd, VFIO_GROUP_GET_DEVICE_FD, f"{name}\0".encode())
        assert res.errno_name == "ENOTTY", (name, res)
