"""Run cases on the chosen backends: one, or kernel and model in lockstep with a diff."""

from __future__ import annotations

import re
import shlex
import time
import urllib.parse
from pathlib import Path

from ..backends.base import Backend
from ..cases.case import Case
from .diff import Diff, diff
from .engine import Runner
from .outcome import CaseOutcome, combine, steps_view
from .topology import profile_for
from .trace import ERROR, FAIL, PASS, SKIP, Trace

BACKENDS = ("model", "kernel", "both")


_SSH_TARGET = re.compile(
    r"ssh://(?:(?P<user>[A-Za-z0-9_][A-Za-z0-9_.-]*)@)?"          # a user name, never an option
    r"(?P<host>[A-Za-z0-9][A-Za-z0-9.-]*|\[[0-9A-Fa-f:.]+\])"      # a host name or address, or [IPv6]
    r"(?::(?P<port>[0-9]{1,5}))?(?P<path>/[^\0\n]*)")
_BDF = re.compile(r"[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]")


def agent_command(target: str, devices: tuple[str, ...]) -> list[str]:
    """``ssh://[user@]host[:port]/path/to/checkout``: the agent on a remote test host,
    over ssh's stdin/stdout (the checkout must be there, with python3).  Every part is checked
    (so nothing reaches ssh as an option: "-oProxyCommand=..." is no host) and ``--`` ends
    ssh's options before the destination."""
    m = _SSH_TARGET.fullmatch(target)
    if m is None or (m["port"] and not 0 < int(m["port"]) < 65536):
        raise ValueError(f"--target {target!r}: expected ssh://[user@]host[:port]/path/to/checkout")
    bad = [d for d in devices if not _BDF.fullmatch(d)]
    if bad:
        raise ValueError(f"--device {bad[0]!r}: expected a PCI address such as 0000:03:00.0")
    host = m["host"].strip("[]")
    dest = f"{m['user']}@{host}" if m["user"] else host
    port = ["-p", m["port"]] if m["port"] else []
    remote = f"cd {shlex.quote(urllib.parse.unquote(m['path']))} && exec python3 -m harness.agent"
    if devices:
        remote += f" --devices {shlex.quote(','.join(devices))}"
    return ["ssh", "-T", *port, "--", dest, remote]


def make_backends(name: str, devices: tuple[str, ...] = (), target: str | None = None) -> list[Backend]:
    """The backends a run on a kernel uses (``name`` "kernel" or "both"; the model alone is a
    Session's).  The kernel is this host's (in process), or a remote host's through the agent
    (``target``).  With "both", the model boots with the kernel's own topology and facts so the
    two are compared on equal terms."""
    from ..model.backend import ModelBackend

    if name not in ("kernel", "both"):
        raise ValueError(f"unknown kernel backend {name!r} (kernel or both)")
    kernel: Backend
    if target:
        from ..agent.client import AgentBackend

        kernel = AgentBackend.spawn(agent_command(target, devices))
    else:
        from ..backends.kernel import KernelBackend

        kernel = KernelBackend(devices=devices)
    return [kernel] if name == "kernel" else [kernel, ModelBackend(kernel.topology(), kernel.facts())]


class Session:
    """A run outside the test VM and the backends it owns: its cases run on them.

    A kernel (this host's or a remote one, make_backends) is one machine whatever the case,
    with the model booted as its twin.  The model alone mirrors release ``model_kernel``
    (default: the 6.12 it was written from) and keeps one model per test VM guest profile
    (model/topologies.py vm_topology and guest_facts), booted on first use; each case runs on
    the model of the guest it needs (runner.topology.profile_for), as a VM run runs it in that
    guest (runner/target.py: a KernelTarget keeps one guest per profile)."""

    def __init__(self, name: str, devices: tuple[str, ...] = (), target: str | None = None,
                 model_kernel: str | None = None, root: Path | None = None, case_timeout: float | None = None):
        if name not in BACKENDS:
            raise ValueError(f"unknown backend {name!r} (one of {', '.join(BACKENDS)})")
        if model_kernel and name != "model":
            raise ValueError("--model-kernel is for the model alone: against a kernel, the model mirrors its release")
        self.root, self.case_timeout = root, case_timeout
        self.release = model_kernel
        # a kernel and its twin; None for the model alone
        self.machine = None if name == "model" else make_backends(name, devices, target)
        self.models: dict[str, Backend] = {}

    def backends(self, profile: str) -> list[Backend]:
        """The backends a case that needs the test VM guest ``profile`` runs on."""
        if self.machine is not None:
            return self.machine
        model = self.models.get(profile)
        if model is None:
            from ..model.backend import ModelBackend
            from ..model.topologies import guest_facts, vm_topology

            model = self.models[profile] = ModelBackend(vm_topology(profile), guest_facts(profile, self.release))
        return [model]

    def run(self, case: Case) -> CaseOutcome:
        return run_case(case, self.backends(profile_for(case)), self.root, self.case_timeout)


def accepted(case: Case, kernel_version: str, d: Diff) -> str:
    """The reason every divergence of ``d`` is documented for this kernel, or ""."""
    reasons = []
    for x in d.divergences:
        line = d.left.steps[x.step].line if x.step < len(d.left.steps) else 0
        kd = next((k for k in case.known_differences if k.covers(kernel_version, line, x.what)), None)
        if kd is None:
            return ""
        reasons.append(kd.reason)
    return "; ".join(dict.fromkeys(reasons))


def run_case(case: Case, backends: list[Backend], root: Path | None = None,
             timeout: float | None = None) -> CaseOutcome:
    """The case on each backend (``timeout``: seconds it may take on each, None for no limit)."""
    start = time.monotonic()
    traces: list[Trace] = [Runner(b).run(case, timeout) for b in backends]
    d: Diff | None = diff(traces[0], traces[1]) if len(traces) == 2 else None
    status = combine([t.status for t in traces])
    reason = "; ".join(f"{t.backend}: {t.reason}" for t in traces if t.reason) if len(traces) > 1 else traces[0].reason
    known = ""
    kernel = next((b.facts().kernel for b in backends if b.name != "model"), "")
    if d is not None and d.first is not None and SKIP not in (traces[0].status, traces[1].status):
        known = accepted(case, kernel, d)
        if not known:
            status = ERROR if status == ERROR else FAIL
            reason = f"divergence: {d.summary()}" + (f"; {reason}" if reason else "")
        elif status == FAIL and all(t.status in (PASS, FAIL) for t in traces):
            status = PASS  # the divergence and the expectation failure it causes are documented
    loc = case.path.relative_to(root) if root and case.path.is_relative_to(root) else case.path
    return CaseOutcome(
        test_id=case.test_id, area=case.area, purpose=case.purpose, location=f"{loc}:{case.line}",
        source=case.source, verified_on=case.verified_on, status=status, reason=reason,
        backends=[b.name for b in backends], divergence=d.summary() if d and d.first else "",
        known_difference=known, steps=steps_view(traces, d), duration_s=time.monotonic() - start,
        kernel=kernel,
    )
