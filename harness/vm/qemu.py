"""The QEMU and kernel command lines of the test VM (docs/vm.md).

No disk image: the host's / is shared read-only over 9p and mounted as the
guest's root, so the host's python3 and this checkout are at the same paths in
the guest.  ``guest-init.sh`` (``init=``) mounts the pseudo filesystems and
tmpfs, binds the profile's functions to vfio-pci and runs the agent on the
virtio-serial port ``vfioconf.agent``, which QEMU exposes on the host as a unix
socket (``-chardev socket,server=on,wait=off``).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..backends.guest_layout import AGENT_PORT, ROOT_TAG, VIRTIO_9P, VIRTIO_SERIAL, Profile

CHECKOUT = Path(__file__).resolve().parents[2]
GUEST_INIT = Path(__file__).resolve().parent / "guest-init.sh"
QEMU = "qemu-system-x86_64"
# Linux caps virtio 9p at 512000 bytes ("Limiting 'msize' to 512000").
NINEP_MSIZE = 512000

# QEMU 7.2 under this machine's nested KVM aborts on MSR 0x10a (IA32_ARCH_CAPABILITIES)
# with `-cpu host`; without that feature it starts (whether it then boots is measured
# at run time: the launcher falls back to TCG).
KVM_CPU = "host,-arch-capabilities"
TCG_CPU = "max"
# The python3 the guest runs the agent with (default: this one, sys.executable).
GUEST_PYTHON_ENV = "VFIO_CONFORMANCE_GUEST_PYTHON"


@dataclass
class LaunchConfig:
    """Everything that decides one QEMU invocation."""

    profile: Profile
    kernel: Path
    accel: str                       # "kvm" or "tcg"
    console_log: Path
    agent_socket: Path
    memory: str = "2G"
    smp: int = 1
    checkout: Path = CHECKOUT
    python: str = field(default_factory=lambda: os.environ.get(GUEST_PYTHON_ENV) or sys.executable)
    # Host folders the agent needs, guest-init binds back those its tmpfs mounts hide (None:
    # reach_paths of the checkout).
    reach: tuple[str, ...] | None = None
    # guest-init switches (vfioconf.*): topo, agent, shell, pyprobe, sriov.
    init_options: dict[str, str] = field(default_factory=dict)
    extra_cmdline: tuple[str, ...] = ()
    extra_qemu_args: tuple[str, ...] = ()
    # Console on QEMU's stdio (and still logged), for an interactive shell.
    interactive: bool = False
    qemu: str = QEMU


def _no_space(what: str, value: str) -> str:
    if not value or any(c.isspace() for c in value):
        raise ValueError(f"{what} {value!r} can't go on the kernel command line (empty or has whitespace)")
    return value


def reach_paths(checkout: Path) -> tuple[str, ...]:
    """What the agent needs of the host: the checkout (or the site-packages the harness is
    installed in) and the interpreter (a venv's prefix, the base prefix, the executable's
    folder), outermost first and without the folders inside another one."""
    dirs = sorted({os.path.abspath(p) for p in (checkout, sys.prefix, sys.base_prefix,
                                                   os.path.dirname(sys.executable))})
    kept: list[str] = []
    for d in dirs:
        if not any(d == k or d.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(d)
    return tuple(kept)


def kernel_cmdline(cfg: LaunchConfig) -> list[str]:
    p = cfg.profile
    checkout = _no_space("checkout", str(cfg.checkout))
    init = cfg.checkout / GUEST_INIT.relative_to(CHECKOUT)
    words = [
        "console=ttyS0,115200",
        # The first lines reach the console before the serial driver is up, so a
        # guest stuck early (nested KVM) is told apart from a slow one.
        "earlyprintk=serial,ttyS0,115200",
        f"root={ROOT_TAG}", "rootfstype=9p",
        f"rootflags=trans=virtio,version=9p2000.L,msize={NINEP_MSIZE},cache=loose", "ro",
        f"init={_no_space('init', str(init))}",
        # A panic exits QEMU (-no-reboot turns the reboot into an exit).
        "panic=-1",
        # Under TCG on a loaded host the IO-APIC timer check can miss its ticks and panic ("timer
        # doesn't work through Interrupt-remapped IO-APIC", seen once in a 7.2 guest): skip it
        # (arch/x86/kernel/apic/io_apic.c: no_timer_check).
        "no_timer_check",
        *p.cmdline,
        f"vfioconf.profile={p.name}",
        f"vfioconf.checkout={checkout}",
        f"vfioconf.python={_no_space('python', cfg.python)}",
    ]
    reach = [_no_space("reach", d) for d in (reach_paths(cfg.checkout) if cfg.reach is None else cfg.reach)]
    if any("," in d for d in reach):
        raise ValueError(f"a folder with a comma can't go in vfioconf.reach: {reach}")
    if reach:
        words.append("vfioconf.reach=" + ",".join(reach))
    if p.bind_order():
        words.append("vfioconf.bind=" + ",".join(p.bind_order()))
    if p.clear_reset():
        words.append("vfioconf.noreset=" + ",".join(p.clear_reset()))
    for key, value in sorted(cfg.init_options.items()):
        words.append(f"vfioconf.{key}={_no_space(key, value)}")
    words.extend(cfg.extra_cmdline)
    return words


def qemu_command(cfg: LaunchConfig) -> list[str]:
    """argv of one VM.  The vIOMMU comes before every PCI device (a device realized
    before it keeps the untranslated address space)."""
    if cfg.accel not in ("kvm", "tcg"):
        raise ValueError(f"accel must be kvm or tcg, not {cfg.accel!r}")
    p = cfg.profile
    machine = "q35"
    if cfg.accel == "kvm" and p.viommu:
        machine += ",kernel-irqchip=split"  # intremap=on needs it under KVM
    argv = [
        cfg.qemu, "-name", f"vfioconf-{p.name}",
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-machine", machine, "-accel", cfg.accel,
        "-cpu", KVM_CPU if cfg.accel == "kvm" else TCG_CPU,
        "-m", cfg.memory, "-smp", str(cfg.smp),
        "-kernel", str(cfg.kernel), "-append", " ".join(kernel_cmdline(cfg)),
    ]
    if cfg.interactive:
        argv += ["-chardev", f"stdio,id=con,signal=off,logfile={cfg.console_log}"]
    else:
        argv += ["-chardev", f"file,id=con,path={cfg.console_log}"]
    argv += ["-serial", "chardev:con"]
    if p.viommu:
        argv += ["-device", "intel-iommu,intremap=on"]
    for dev in p.qemu_prelude:
        argv += ["-device", dev]
    for f in p.functions:
        argv += ["-device", f.qemu]
    argv += [
        "-fsdev", "local,id=root,path=/,security_model=none,readonly=on,multidevs=remap",
        "-device", VIRTIO_9P.qemu,
        "-device", VIRTIO_SERIAL.qemu,
        "-chardev", f"socket,id=agent,path={cfg.agent_socket},server=on,wait=off",
        "-device", f"virtserialport,bus=vser0.0,chardev=agent,name={AGENT_PORT}",
    ]
    argv += list(cfg.extra_qemu_args)
    return argv

