"""The VM launcher without booting anything: command lines, guest-init, console
splats, the guest dump parser, and the boot/fallback logic against a fake QEMU."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.backends.guest_layout import AGENT_PORT, PROFILES, Q35_BUILTIN, profile
from harness.model.topologies import vm_topology
from harness.vm import console, observe
from harness.vm import vm as vmmod
from harness.vm.qemu import CHECKOUT, GUEST_INIT, LaunchConfig, kernel_cmdline, qemu_command, reach_paths


def cfg(name: str = "viommu", accel: str = "tcg", **kw: object) -> LaunchConfig:
    return LaunchConfig(profile=profile(name), kernel=Path("/k/bzImage"), accel=accel,  # type: ignore[arg-type]
                        console_log=Path("/run/x/console.log"), agent_socket=Path("/run/x/agent.sock"), **kw)


def devices(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == "-device"]


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def cmdline_words(argv: list[str]) -> list[str]:
    return option(argv, "-append").split()


# -- QEMU command line ---------------------------------------------------------
def test_viommu_puts_the_iommu_before_every_pci_device() -> None:
    argv = qemu_command(cfg())
    devs = devices(argv)
    assert devs[0] == "intel-iommu,intremap=on"
    assert option(argv, "-machine").startswith("q35")
    # Every test function is there once, after the vIOMMU, at its fixed address.
    for f in PROFILES["viommu"].functions:
        assert devs.count(f.qemu) == 1
        bus, rest = f.bdf.split(":")[1:]
        slot, fn = rest.split(".")
        assert f"addr={slot}.{fn}" in f.qemu
        assert ("bus=br1" if bus == "01" else "bus=pcie.0") in f.qemu
    assert devs.index("nvme-subsys,id=s0") < next(i for i, d in enumerate(devs) if d.startswith("nvme,"))
    bridge = next(i for i, d in enumerate(devs) if d.startswith("pci-bridge,id=br1"))
    assert all(i > bridge for i, d in enumerate(devs) if "bus=br1" in d)


def test_nvme_pf_is_the_measured_sriov_device() -> None:
    nvme = next(d for d in devices(qemu_command(cfg())) if d.startswith("nvme,"))
    for opt in ("subsys=s0", "sriov_max_vfs=3", "sriov_vq_flexible=8", "sriov_vi_flexible=4", "max_ioqpairs=12",
                "msix_qsize=6"):
        assert opt in nvme.split(",")


def test_common_options_and_agent_channel() -> None:
    for name in PROFILES:
        argv = qemu_command(cfg(name))
        for flag in ("-nodefaults", "-no-reboot", "-no-user-config"):
            assert flag in argv
        assert option(argv, "-display") == "none"
        assert option(argv, "-m") == "2G"
        assert option(argv, "-kernel") == "/k/bzImage"
        chardevs = [argv[i + 1] for i, a in enumerate(argv) if a == "-chardev"]
        assert "socket,id=agent,path=/run/x/agent.sock,server=on,wait=off" in chardevs
        assert "file,id=con,path=/run/x/console.log" in chardevs
        assert option(argv, "-serial") == "chardev:con"
        devs = devices(argv)
        assert f"virtserialport,bus=vser0.0,chardev=agent,name={AGENT_PORT}" in devs
        assert any(d.startswith("virtio-serial-pci,id=vser0,") for d in devs)
        assert any(d.startswith("virtio-9p-pci,fsdev=root,mount_tag=/dev/root") for d in devs)
        assert "local,id=root,path=/,security_model=none,readonly=on,multidevs=remap" in argv


def test_mock_has_no_viommu_and_one_noiommu_e1000() -> None:
    argv = qemu_command(cfg("mock"))
    devs = devices(argv)
    assert not any(d.startswith(("intel-iommu", "nvme", "pci-bridge")) for d in devs)
    assert [d for d in devs if d.startswith("e1000")] == ["e1000,bus=pcie.0,addr=02.0"]
    words = cmdline_words(argv)
    assert not any(w.startswith(("vfioconf.noreset=", "intel_iommu", "vfio_pci.")) for w in words)
    # vfio is built in: no-IOMMU mode from the command line, the e1000 straight to vfio-pci.
    for w in ("hugepages=128", "vfio.enable_unsafe_noiommu_mode=1", "initcall_blacklist=e1000_init_module",
              "vfioconf.bind=0000:00:02.0"):
        assert w in words, w


def test_kernel_command_line() -> None:
    words = cmdline_words(qemu_command(cfg()))
    for w in ("root=/dev/root", "rootfstype=9p", "ro", "panic=-1", "no_timer_check", "console=ttyS0,115200",
              "intel_iommu=on",
              "vfio_pci.enable_sriov=1", "vfioconf.profile=viommu", f"vfioconf.checkout={CHECKOUT}",
              f"vfioconf.python={sys.executable}", f"init={GUEST_INIT}"):
        assert w in words, w
    flags = next(w for w in words if w.startswith("rootflags=")).split("=", 1)[1].split(",")
    assert {"trans=virtio", "version=9p2000.L", "cache=loose"} <= set(flags)
    # Bind order is the model's cdev order; the NVMe PF's reset is cleared.
    assert "vfioconf.bind=0000:00:02.0,0000:00:03.0,0000:00:1f.0,0000:01:01.0" in words
    assert "vfioconf.noreset=0000:00:03.0" in words


def test_kvm_uses_a_split_irqchip_for_interrupt_remapping() -> None:
    argv = qemu_command(cfg(accel="kvm"))
    assert option(argv, "-machine") == "q35,kernel-irqchip=split"
    assert option(argv, "-accel") == "kvm"
    assert option(qemu_command(cfg("mock", accel="kvm")), "-machine") == "q35"
    assert option(qemu_command(cfg()), "-cpu") == "max"
    with pytest.raises(ValueError):
        qemu_command(cfg(accel="hvf"))


def test_init_options_extra_args_and_interactive_console() -> None:
    argv = qemu_command(cfg(init_options={"topo": "1", "sriov": "0000:00:03.0:2"}, extra_cmdline=("quiet",),
                            extra_qemu_args=("-s",), interactive=True))
    words = cmdline_words(argv)
    assert "vfioconf.topo=1" in words and "vfioconf.sriov=0000:00:03.0:2" in words and words[-1] == "quiet"
    assert argv[-1] == "-s"
    assert "stdio,id=con,signal=off,logfile=/run/x/console.log" in argv


def test_paths_with_whitespace_are_refused() -> None:
    with pytest.raises(ValueError):
        kernel_cmdline(cfg(checkout=Path("/a b")))
    with pytest.raises(ValueError):
        kernel_cmdline(cfg(init_options={"topo": "1 2"}))


def test_the_guest_is_told_to_reach_the_checkout_and_the_interpreter() -> None:
    (reach,) = [w.split("=", 1)[1].split(",") for w in cmdline_words(qemu_command(cfg())) if
                w.startswith("vfioconf.reach=")]
    for needed in (CHECKOUT, Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).parent):
        assert any(needed.is_relative_to(r) for r in reach), (needed, reach)
    # A folder inside another one is not bound twice; the checkout named is the one reached.
    assert "/tmp/co" in reach_paths(Path("/tmp/co"))
    assert str(Path(sys.prefix) / "lib") not in reach_paths(Path(sys.prefix) / "lib")
    words = cmdline_words(qemu_command(cfg(checkout=Path("/tmp/co"), reach=("/tmp/co", "/tmp/venv"))))
    assert "vfioconf.reach=/tmp/co,/tmp/venv" in words
    with pytest.raises(ValueError, match="comma"):
        kernel_cmdline(cfg(reach=("/tmp/a,b",)))


def test_the_guest_python_can_be_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VFIO_CONFORMANCE_GUEST_PYTHON", "/opt/py/bin/python3")
    assert "vfioconf.python=/opt/py/bin/python3" in cmdline_words(qemu_command(cfg()))


# -- topology.py and the model ---------------------------------------------------
def test_declared_functions_match_the_models_vm_topology() -> None:
    model = vm_topology()
    prof = PROFILES["viommu"]
    for f in (*prof.functions, *Q35_BUILTIN):
        m = model.functions[f.bdf]
        assert (m.vendor, m.device) == (f.vendor, f.device), f.bdf
    # What guest-init binds to vfio-pci is what the model boots on vfio-pci, and the
    # bind order gives the model's cdev numbers.
    on_vfio = sorted(b for b, m in model.functions.items() if m.driver == "vfio-pci")
    assert sorted(prof.bind_order()) == on_vfio
    assert [model.functions[b].cdev for b in prof.bind_order()] == [f"vfio{i}" for i in range(len(on_vfio))]
    nonviable = prof.offering("nonviable").bdf
    assert [s.driver for s in model.siblings(nonviable) if s.driver] == ["e1000"]
    assert model.functions[prof.offering("sriov-pf").bdf].sriov_totalvfs == 3
    with pytest.raises(ValueError):
        profile("nope")


# -- guest-init.sh ---------------------------------------------------------------------
@pytest.mark.parametrize("shell", ["sh", "dash", "bash", "busybox"])
def test_guest_init_parses(shell: str) -> None:
    exe = shutil.which(shell)
    if exe is None:
        pytest.skip(f"no {shell}")
    argv = [exe, "sh", "-n", str(GUEST_INIT)] if shell == "busybox" else [exe, "-n", str(GUEST_INIT)]
    res = subprocess.run(argv, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_guest_init_is_executable_and_reads_every_option_it_is_given() -> None:
    assert os.access(GUEST_INIT, os.X_OK)
    text = GUEST_INIT.read_text()
    assert text.startswith("#!/bin/sh\n")
    words = cmdline_words(qemu_command(cfg(init_options={"topo": "1", "agent": "0", "shell": "1", "pyprobe": "1",
                                                          "sriov": "0000:00:03.0:2"})))
    for w in words:
        if w.startswith("vfioconf."):
            assert f"{w.split('=')[0]}=*)" in text, w
    assert f"AGENT_PORT={AGENT_PORT}" in text
    assert "-m harness.agent --channel" in text


# -- console splats -----------------------------------------------------------------------
WARN = """\
[   41.118203] ------------[ cut here ]------------
[   41.118590] WARNING: CPU: 0 PID: 312 at drivers/vfio/vfio_main.c:1291 vfio_device_fops_unl_ioctl+0x5d/0x70
[   41.119452] Modules linked in:
[   41.119783] CPU: 0 UID: 0 PID: 312 Comm: python3 Not tainted 6.12.117 #1
[   41.120410] RIP: 0010:vfio_device_fops_unl_ioctl+0x5d/0x70
[   41.121881] Call Trace:
[   41.122011]  <TASK>
[   41.122390]  __x64_sys_ioctl+0x94/0xd0
[   41.122655]  do_syscall_64+0x9e/0x1a0
[   41.123203]  </TASK>
[   41.123358] ---[ end trace 0000000000000000 ]---
"""

NULL_DEREF = """\
[   52.001002] BUG: kernel NULL pointer dereference, address: 0000000000000008
[   52.001530] #PF: supervisor read access in kernel mode
[   52.001911] #PF: error_code(0x0000) - not-present page
[   52.002290] PGD 0 P4D 0
[   52.002481] Oops: Oops: 0000 [#1] PREEMPT SMP NOPTI
[   52.002840] CPU: 0 UID: 0 PID: 320 Comm: python3 Not tainted 6.12.117 #1
[   52.003390] RIP: 0010:iopt_unmap_iova_range+0x4b/0x1f0
[   52.007203] Call Trace:
[   52.007411]  <TASK>
[   52.008203]  </TASK>
[   52.008703] ---[ end trace 0000000000000000 ]---
"""

KASAN = """\
[   60.100001] ==================================================================
[   60.100502] BUG: KASAN: slab-use-after-free in iommufd_hwpt_paging_destroy+0x31/0x80
[   60.101003] Read of size 8 at addr ffff888012345678 by task python3/330
[   60.102004] Call Trace:
[   60.102505]  <TASK>
[   60.103006]  </TASK>
[   60.103507]
[   60.104008] Allocated by task 330:
[   60.104509]  kasan_save_stack+0x22/0x50
[   60.105010] Freed by task 330:
[   60.105511]  kfree+0xd3/0x3b0
[   60.106012] ==================================================================
[   60.106513] Disabling lock debugging due to kernel taint
"""

MISC = """\
[  120.000001] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:
[  120.000502] rcu: \t0-...!: (1 GPs behind) idle=1234/1/0x4000000000000000 softirq=100/101 fqs=0
[  120.001003]  <TASK>
[  120.001504]  </TASK>
[  242.000001] INFO: task python3:340 blocked for more than 120 seconds.
[  242.000502]       Not tainted 6.12.117 #1
[  242.001003] "echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message.
[  242.001504]  <TASK>
[  242.002005]  </TASK>
[  250.000001] watchdog: BUG: soft lockup - CPU#0 stuck for 26s! [python3:341]
[  250.000502]  </TASK>
[  260.000001] general protection fault, probably for non-canonical address 0xdead000000000100: 0000 [#2] SMP NOPTI
[  260.000502] ---[ end trace 0000000000000000 ]---
[  260.001003] Kernel panic - not syncing: Fatal exception
[  260.001504] ---[ end Kernel panic - not syncing: Fatal exception ]---
"""

NOISE = """\
vfioconf: init at 7.81s
WARNING:root:this is Python logging, not the kernel
Oops, a user-space message
[    3.141592] pci 0000:00:03.0: [1b36:0010] type 00 class 0x010802 PCIe Endpoint
[    3.200000] clocksource: timekeeping watchdog on CPU0: Marking clocksource 'tsc' as unstable
[    4.000000] ACPI: bus type PCI registered
"""


def test_warn_is_one_splat_with_its_trace() -> None:
    (s,) = console.scan(NOISE + WARN)
    assert s.kind == "WARNING"
    assert s.title.startswith("WARNING: CPU: 0 PID: 312 at drivers/vfio/vfio_main.c:1291")
    assert s.excerpt.splitlines()[-1].endswith("---[ end trace 0000000000000000 ]---")
    assert "__x64_sys_ioctl" in s.excerpt
    # The offset is the byte offset of the WARNING line in the log.
    log = (NOISE + WARN).encode()
    assert log[s.offset:].startswith(b"[   41.118590] WARNING:")


def test_null_deref_and_its_oops_are_one_bug() -> None:
    (s,) = console.scan(NULL_DEREF)
    assert s.kind == "BUG" and "NULL pointer dereference" in s.title
    assert "Oops: Oops: 0000 [#1]" in s.excerpt


def test_kasan_report_runs_to_its_closing_rule() -> None:
    (s,) = console.scan(KASAN)
    assert s.kind == "KASAN" and "slab-use-after-free in iommufd_hwpt_paging_destroy" in s.title
    assert "Freed by task 330" in s.excerpt and "Disabling lock debugging" not in s.excerpt


def test_stalls_hung_tasks_lockups_gpf_panic() -> None:
    kinds = [s.kind for s in console.scan(MISC)]
    assert kinds == ["RCU stall", "hung task", "soft lockup", "GPF", "panic"]


def test_no_splats_in_ordinary_output_and_scan_from_an_offset(tmp_path: Path) -> None:
    assert console.scan(NOISE) == []
    log = tmp_path / "console.log"
    log.write_text(WARN + NOISE + KASAN)
    all_splats = console.scan_file(log)
    assert [s.kind for s in all_splats] == ["WARNING", "KASAN"]
    later = console.scan_file(log, len((WARN + NOISE).encode()))
    assert later == [all_splats[1]]
    assert console.scan_file(tmp_path / "missing") == []


def test_classify_lockdep_and_others() -> None:
    assert console.classify("[ 1.0] WARNING: possible circular locking dependency detected") == "lockdep"
    assert console.classify("kernel BUG at mm/slub.c:435!") == "BUG"
    assert console.classify("[    9.9] UBSAN: array-index-out-of-bounds in drivers/vfio/x.c:3:5") == "UBSAN"
    assert console.classify("[    9.9] BUG: KFENCE: out-of-bounds read in f+0x1/0x2") == "KFENCE"
    assert console.classify("[    9.9] Oops: general protection fault, probably for non-canonical address") == "GPF"
    assert console.classify("WARNING:root:python") is None


def test_excerpts_are_bounded() -> None:
    text = "[ 1.0] WARNING: CPU: 0 PID: 1 at x.c:1 f+0x0/0x1\n" + "[ 1.0]  frame\n" * 500
    (s,) = console.scan(text)
    assert len(s.excerpt.splitlines()) == console.MAX_LINES


# -- guest-init's dump ----------------------------------------------------------------------
DUMP = """\
vfioconf-pci bdf=0000:00:02.0 vendor=0x8086 device=0x100e class=0x020000 driver=vfio-pci override=vfio-pci \
group=1 cdev=vfio0 reset=- numvfs=- totalvfs=- physfn=- cfgsize=256 \
res=0x00000000fea00000:0x00000000fea1ffff:0x0000000000040200,0x000000000000c000:0x000000000000c03f:0x0000000000040101,\
0x0000000000000000:0x0000000000000000:0x0000000000000000,0x0000000000000000:0x0000000000000000:0x0000000000000000,\
0x0000000000000000:0x0000000000000000:0x0000000000000000,0x0000000000000000:0x0000000000000000:0x0000000000000000,\
0x00000000fe9c0000:0x00000000fe9fffff:0x0000000000046200
vfioconf-pci bdf=0000:00:03.0 vendor=0x1b36 device=0x0010 class=0x010802 driver=vfio-pci override=vfio-pci \
group=2 cdev=vfio1 reset=none numvfs=2 totalvfs=3 physfn=- cfgsize=4096 res=
vfioconf-nodes /dev/vfio/1 /dev/vfio/2 /dev/vfio/vfio /dev/vfio/devices/vfio0 /dev/iommu
vfioconf-mem MemTotal: 2013456
vfioconf-param vfio_pci.enable_sriov=Y
"""


def test_parse_dump_and_compare_with_the_model() -> None:
    d = observe.parse_dump(DUMP)
    e1000 = d.topology.functions["0000:00:02.0"]
    assert (e1000.vendor, e1000.device, e1000.iommu_group, e1000.driver, e1000.cdev) == (0x8086, 0x100E, 1,
                                                                                         "vfio-pci", "vfio0")
    assert e1000.bar_sizes == (0x20000, 0x40, 0, 0, 0, 0) and e1000.io_bars == (1,) and e1000.rom_size == 0x40000
    assert not e1000.is_pcie and e1000.reset_methods == ()
    nvme = d.topology.functions["0000:00:03.0"]
    assert nvme.is_pcie and (nvme.sriov_numvfs, nvme.sriov_totalvfs) == (2, 3) and nvme.reset_methods == ()
    assert d.nodes[-1] == "/dev/iommu" and d.meminfo["MemTotal"] == 2013456
    assert d.params == {"vfio_pci.enable_sriov": "Y"}
    diffs = observe.differences(d.topology, vm_topology(), ignore=("0000:00:00.0",))
    assert "0000:00:03.0 reset_methods: guest (), model ('flr')" in diffs
    assert not any(x.startswith("0000:00:02.0") for x in diffs)
    assert "0000:01:02.0: in the model, not in the guest" in diffs
    assert any("group" in line for line in observe.summary(d.topology))


# -- Vm against a fake QEMU --------------------------------------------------------------------
FAKE_QEMU = textwrap.dedent("""\
    #!{python}
    # Stands in for qemu-system-x86_64: understands the console and agent chardevs.
    import os, socket, sys, time
    argv = sys.argv[1:]
    accel = argv[argv.index("-accel") + 1]
    mode = os.environ["FAKE_QEMU_MODE"]
    chardevs = [argv[i + 1] for i, a in enumerate(argv) if a == "-chardev"]
    con = next(c for c in chardevs if c.startswith("file,id=con,")).split("path=")[1]
    sock = next(c for c in chardevs if c.startswith("socket,id=agent,")).split("path=")[1].split(",")[0]
    log = open(con, "a", buffering=1)
    if accel == "kvm" and mode == "kvm-abort":
        print("qemu: error: failed to set MSR 0x10a", file=sys.stderr)
        sys.exit(134)
    if accel == "kvm" and mode == "kvm-hang":
        time.sleep(600)
    log.write("[    0.000000] Linux version 6.12.117 (fake)\\n")
    if mode == "panic":
        log.write("[    1.000000] Kernel panic - not syncing: VFS: Unable to mount root fs\\n")
        time.sleep(600)
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(sock)
    srv.listen(1)
    if mode == "agent-exits":
        log.write("vfioconf: agent starting at 1.00s\\nsh: 1: /nonexistent/python3: not found\\n"
                  "vfioconf: agent exited with status 127\\nvfioconf: power off at 1.01s\\n")
        sys.exit(0)
    log.write("vfioconf: init at 1.00s\\nvfioconf: ready at 1.10s (no agent)\\n")
    conn, _ = srv.accept()
    time.sleep(0.3)
    conn.sendall(b"HELLO-FRAME")
    time.sleep(600)
""")


@pytest.fixture
def fake_qemu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    exe = tmp_path / "fake-qemu"
    exe.write_text(FAKE_QEMU.format(python=sys.executable))
    exe.chmod(0o755)
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(b"\0")
    monkeypatch.setattr(vmmod, "_agent_backend_class", lambda: None)
    monkeypatch.setattr(vmmod, "kvm_usable", lambda: None)
    monkeypatch.setattr(vmmod, "_kvm_broken", None)
    monkeypatch.delenv(vmmod.ACCEL_ENV, raising=False)
    return exe


def boot(fake_qemu: Path, mode: str, monkeypatch: pytest.MonkeyPatch, **kw: object) -> vmmod.Vm:
    monkeypatch.setenv("FAKE_QEMU_MODE", mode)
    v = vmmod.Vm(qemu=str(fake_qemu), workdir=fake_qemu.parent / f"run-{mode}", precompile=False, **kw)  # type: ignore[arg-type]
    return v.start("viommu", fake_qemu.parent / "bzImage")


def test_raw_hello_is_kept_with_its_channel(fake_qemu: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with boot(fake_qemu, "ok", monkeypatch, accel="tcg") as v:
        assert v.hello == b"HELLO-FRAME" and v.channel is not None and v.accel == "tcg"
        assert v.attempts[0][:2] == ("tcg", "up")
        assert v.alive()
    assert not v.alive() and v.channel is None


def test_kvm_abort_falls_back_to_tcg(fake_qemu: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with boot(fake_qemu, "kvm-abort", monkeypatch) as v:
        assert v.accel == "tcg" and v.hello == b"HELLO-FRAME"
        assert "status 134" in (v.kvm_failure or "") and "MSR 0x10a" in (v.kvm_failure or "")
        assert [a for a, _, _ in v.attempts] == ["kvm", "tcg"]
    # The verdict holds for the rest of the process.
    assert vmmod._kvm_broken


def test_kvm_silence_falls_back_to_tcg(fake_qemu: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with boot(fake_qemu, "kvm-hang", monkeypatch, kvm_probe_timeout=1.0, wait_for="init") as v:
        assert v.accel == "tcg" and "no kernel output" in (v.kvm_failure or "")


def test_boot_panic_and_run_timeout(fake_qemu: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(vmmod.BootError, match="panicked"):
        boot(fake_qemu, "panic", monkeypatch, accel="tcg")
    v = boot(fake_qemu, "ok", monkeypatch, accel="tcg", wait_for="init", run_timeout=1.0)
    assert v.wait(10) is not None and v.timed_out
    v.close()


def test_an_agent_that_exits_before_its_hello_is_an_agent_start_error(fake_qemu: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(vmmod.AgentStartError, match="exited with status 127 before it said hello") as e:
        boot(fake_qemu, "agent-exits", monkeypatch, accel="tcg")
    assert "/nonexistent/python3: not found" in e.value.console_tail
    # A guest that dies otherwise is a plain BootError (replaced, the run goes on).
    with pytest.raises(vmmod.BootError) as panic:
        boot(fake_qemu, "panic", monkeypatch, accel="tcg", boot_timeout=5.0)
    assert not isinstance(panic.value, vmmod.AgentStartError)


def test_missing_kernel_or_qemu(tmp_path: Path) -> None:
    with pytest.raises(vmmod.VmError, match="no kernel"):
        vmmod.Vm(workdir=tmp_path).start("viommu", tmp_path / "none")
    (tmp_path / "k").write_bytes(b"")
    with pytest.raises(vmmod.VmError, match="not installed"):
        vmmod.Vm(workdir=tmp_path, qemu="no-such-qemu-binary").start("viommu", tmp_path / "k")


def test_stop_does_not_wait_on_a_hung_agent(fake_qemu: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    v = boot(fake_qemu, "ok", monkeypatch, accel="tcg", wait_for="init")

    class Hung:
        closed = False

        def call(self, op: str, timeout: float | None = None) -> None:
            raise TimeoutError(f"{op}: no reply")

        def close(self) -> None:
            self.closed = True

    hung = Hung()
    v.agent = hung
    t0 = time.monotonic()
    assert v.stop() is not None
    assert time.monotonic() - t0 < 5 and not v.alive() and hung.closed
    v.close()


def test_a_guest_known_to_be_hung_is_not_asked_to_power_off(fake_qemu: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    v = boot(fake_qemu, "ok", monkeypatch, accel="tcg", wait_for="init")

    class Silent:
        closed = False
        asked: list[str] = []

        def call(self, op: str, timeout: float | None = None) -> None:
            self.asked.append(op)

        def close(self) -> None:
            self.closed = True

    silent = Silent()
    v.agent = silent
    v.close(hung=True)
    assert silent.asked == [] and silent.closed and not v.alive()


# As seen in the mock guest when fault injection failed an allocation on the device-open path
# (ACPI _PRT evaluation), then in later, uninjected ACPI calls.
ACPI_CORRUPTION = """\
[  812.104611] ACPI Error: AE_NO_MEMORY, Could not allocate an object descriptor (20240827/utobject-432)
[  812.105002] ACPI Error: Aborting method \\_SB.PCI0._PRT due to previous error (AE_NO_MEMORY) (20240827/psparse-529)
[  812.105311] e1000 0000:00:02.0: enabling device (0000 -> 0003)
[  815.220940] ACPI Error: 0xffff9e3c4aa1b000 is not an ACPI Operand object [Reference] (20240827/utdelete-373)
[  815.221334] ACPI BIOS Error (bug): Large Reference Count (0x1F40) in object ffff9e3c4aa1b000, Type=0x0E
"""


def test_acpica_errors_are_splats_of_one_line_each() -> None:
    splats = console.scan(NOISE + ACPI_CORRUPTION + NOISE)
    assert [s.kind for s in splats] == ["ACPI"] * 4
    assert "Could not allocate" in splats[0].title and "_PRT" in splats[1].title
    assert all("\n" not in s.excerpt for s in splats)     # the e1000 line and NOISE are not absorbed
    assert "Large Reference Count" in splats[3].excerpt
    assert console.classify("[    1.0] ACPI: PCI Interrupt Link [LNKA] (IRQs 5 *10 11)") is None
