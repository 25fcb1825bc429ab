"""python3 -m harness.vm --kernel BZIMAGE [--profile viommu|mock] [--shell]

Boots the test VM, prints what the guest reports (kernel release, PCI
functions, IOMMU groups, drivers, cdevs) and how that differs from the model's
vm_topology(), then shuts it down; with --shell the console stays interactive
until the guest's shell exits.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ..backends.base import Topology
from ..backends.guest_layout import PROFILES
from ..exitcodes import ENVIRONMENT, OK, ArgumentParser
from ..model.topologies import vm_topology
from . import observe
from .vm import BootError, Vm, VmError, find_kernel


def _report_agent(agent: Any) -> Topology | None:
    """Print facts and topology through the agent; None if it can't answer those."""
    facts = getattr(agent, "facts", None)
    topology = getattr(agent, "topology", None)
    if facts is None or topology is None:
        return None
    f = facts()
    print(f"kernel {f.kernel}, container {f.container or '-'}, mock domains {f.mock_domains}, "
          f"enable_sriov {f.enable_sriov}, profile {f.profile or '-'}")
    topo: Topology = topology()
    for line in observe.summary(topo):
        print("  " + line)
    return topo


def main(argv: list[str] | None = None) -> int:
    ap = ArgumentParser(prog="python3 -m harness.vm", description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", type=Path, help="bzImage (default: $VFIO_CONFORMANCE_KERNEL or the build cache)")
    ap.add_argument("--profile", choices=sorted(PROFILES), default="viommu")
    ap.add_argument("--shell", action="store_true", help="leave an interactive console (exit the shell to stop)")
    ap.add_argument("--accel", choices=("auto", "kvm", "tcg"), default=None)
    ap.add_argument("--no-agent", action="store_true", help="boot to guest-init only (no agent)")
    ap.add_argument("--dump", action="store_true",
                    help="have guest-init print every PCI function's sysfs facts, and compare them with the model")
    ap.add_argument("--sriov", metavar="N", type=int, help="have guest-init write N to the NVMe PF's sriov_numvfs")
    ap.add_argument("--timeout", type=float, default=300.0, help="boot timeout in seconds")
    ap.add_argument("--workdir", type=Path, help="keep console.log, qemu.log, agent.sock here")
    ap.add_argument("--append", action="append", default=[], help="extra kernel command line word")
    args = ap.parse_args(argv)

    kernel = args.kernel or find_kernel()
    if kernel is None:
        print("no kernel: pass --kernel or set $VFIO_CONFORMANCE_KERNEL", file=sys.stderr)
        return ENVIRONMENT
    options = {"topo": "1"} if args.dump or args.no_agent else {}
    if args.shell:
        options["shell"] = "1"
    if args.sriov is not None:
        pf = PROFILES["viommu"].offering("sriov-pf").bdf
        options["sriov"] = f"{pf}:{args.sriov}"
    vm = Vm(accel=args.accel, boot_timeout=args.timeout, workdir=args.workdir, keep_workdir=True,
            wait_for="init" if args.no_agent else "agent", init_options=options, interactive=args.shell)
    print(f"booting {kernel} ({args.profile}); console log {vm.console_log}", file=sys.stderr)
    try:
        vm.start(args.profile, kernel, extra_cmdline=args.append)
    except (BootError, VmError) as e:
        print(f"boot failed: {e}", file=sys.stderr)
        vm.stop()
        return ENVIRONMENT
    try:
        for accel, outcome, secs in vm.attempts:
            print(f"{accel}: {outcome} after {secs:.1f} s")
        if vm.kvm_failure:
            print(f"KVM not used: {vm.kvm_failure}")
        if vm.hello is not None:
            print(f"agent hello: {vm.hello if isinstance(vm.hello, dict) else vm.hello[:200]!r}")
        reported = _report_agent(vm.agent) if vm.agent is not None else None
        diffs: list[str] | None = None
        if "topo" in options:
            vm.wait_console(r"vfioconf: topology printed", 60)
            dump = observe.parse_dump(vm.console_text())
            if reported is None:
                print("guest topology (guest-init's sysfs dump):")
                for line in observe.summary(dump.topology):
                    print("  " + line)
            print("device nodes: " + " ".join(dump.nodes))
            print("memory: " + ", ".join(f"{k} {v} kB" if k.startswith("Mem") else f"{k} {v}"
                                         for k, v in dump.meminfo.items()))
            diffs = observe.differences(dump.topology, vm_topology(args.profile))
        elif reported is not None:
            # What the kernel backend reads from sysfs (no reset methods, ROM or I/O BARs).
            diffs = observe.differences(reported, vm_topology(args.profile), fields=(
                "vendor", "device", "iommu_group", "driver", "cdev", "sriov_totalvfs", "class_code", "bar_sizes",
                "is_pcie"))
        if diffs is not None:
            print(f"differences from the model's vm_topology({args.profile!r}):" if diffs
                  else f"same as vm_topology({args.profile!r})")
            for d in diffs:
                print("  " + d)
        if args.shell:
            print("console is interactive; exit the guest shell to power off", file=sys.stderr)
            vm.wait()
    except KeyboardInterrupt:
        pass
    finally:
        code = vm.stop()
    print(f"stopped (QEMU exit status {code}); logs in {vm.workdir}", file=sys.stderr)
    return OK


if __name__ == "__main__":
    sys.exit(main())
