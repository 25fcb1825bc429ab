"""The stateful fuzzers: Hypothesis state machines whose rules are uAPI operations.

Every rule writes one step in the case format (docs/case-format.md) with
``expect: any``, runs it on every backend of the lockstep at once, and fails when
the backends' normalised results differ.  A machine keeps the *names* steps bind
(``$iommufd1``, ``$ioas2``, ``$buf3``, ``$group4``) by what they stand for; each
backend resolves a name to its own fd, id or address, so a name is the (kernel
handle, model handle) pair.  The steps run so far are kept, so a failure is a
case file as it stands.

Arguments are drawn mostly valid; ``invalid_share`` of the steps take one
argument from its boundary and invalid side (sizes around the minimum, unknown
flag bits, reserved fields, ids of destroyed or wrong-type objects, IOVAs at the
range edges and wrapping around).  Hypothesis shrinks towards the valid side.

The machines share this plumbing and are found by kind in ``MACHINES``, which
their modules fill: ``iommufd`` (harness/fuzz/iommufd_rules.py, in a guest with
mock domains) and ``vfio`` (harness/fuzz/vfio_rules.py: container, group, device
and cdev ioctls and sysfs moves, in a guest with a vIOMMU).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine

from ..backends import roles
from .lockstep import Lockstep

PAGE = 4096
HUGE = 2 << 20
U64_MAX = (1 << 64) - 1


class Divergence(AssertionError):
    """The backends disagreed (or the kernel splatted) at the last of ``steps``."""

    def __init__(self, summary: str, steps: list[dict[str, Any]]):
        super().__init__(summary)
        self.summary, self.steps = summary, list(steps)


def hex_(v: int) -> str:
    """Addresses and lengths as a case file spells them."""
    return f"{v:#x}"


def mostly(valid: st.SearchStrategy[Any], invalid: st.SearchStrategy[Any], share: float) -> st.SearchStrategy[Any]:
    """``valid`` except for ``share`` of the draws; shrinks towards ``valid``."""
    cut = round(share * 1000)
    return st.integers(0, 999).flatmap(lambda r: invalid if r >= 1000 - cut else valid)


def user_va(buf: str, offset: int) -> str:
    """An address ``offset`` into ``buf``.  Machines map their buffers with ``align: HUGE``:
    automatic IOVAs keep the alignment of user_va (io_pagetable.c:136-141), and where mmap()
    puts a buffer is the target's choice (ASLR), so both sides see the same alignment only
    from an aligned start."""
    return f"${buf} + {offset:#x}"


class Fields:
    """One step's arguments: at most one of them, ``share`` of the time, from its
    invalid side, so a failing call fails for one reason."""

    def __init__(self, data: st.DataObject, names: list[str], share: float):
        self.data = data
        self.bad = data.draw(mostly(st.just(None), st.sampled_from(names), share)) if names else None

    def get(self, name: str, valid: st.SearchStrategy[Any], invalid: st.SearchStrategy[Any]) -> Any:
        return self.data.draw(invalid if name == self.bad else valid)

    def obj(self, name: str, handle: str) -> str:
        """An object id: the one saved, or one no object has."""
        return str(self.get(name, st.just(f"${handle}"), st.sampled_from([f"${handle} + 1000", "0", "U32_MAX"])))


class SequenceMachine(RuleBasedStateMachine):
    """What every machine does with a step: name what it binds, run it in lockstep, keep it."""

    lockstep: Lockstep
    share: float = 0.2
    after_step: Callable[[], str] | None = None

    def __init__(self) -> None:
        super().__init__()
        self.lockstep.start()
        self.steps: list[dict[str, Any]] = []
        self.bound: set[str] = set(self.lockstep.roles)
        self.counter = 0

    def teardown(self) -> None:
        self.lockstep.finish()

    def name(self, stem: str) -> str:
        self.counter += 1
        return f"{stem}{self.counter}"

    def do(self, raw: dict[str, Any]) -> None:
        raw.setdefault("expect", "any")
        self.steps.append(raw)
        hook = type(self).after_step
        problem = self.lockstep.run_raw(raw, self.bound, len(self.steps) - 1, hook)
        if problem:
            raise Divergence(problem, self.steps)

    def pick(self, data: st.DataObject, names: list[str]) -> str:
        return str(data.draw(st.sampled_from(names)))

    def fields(self, data: st.DataObject, names: list[str]) -> Fields:
        return Fields(data, names, self.share)


def bind(base: type[SequenceMachine], lockstep: Lockstep, invalid_share: float,
         after_step: Callable[[], str] | None) -> type[SequenceMachine]:
    """``base``'s rules bound to ``lockstep`` (Hypothesis instantiates the class per example)."""
    return type(base.__name__, (base,), {"lockstep": lockstep, "share": invalid_share,
                                         "after_step": staticmethod(after_step) if after_step else None})


@dataclass(frozen=True)
class MachineKind:
    """One kind of machine, and what it needs of a target."""

    kind: str
    build: Callable[[bool], type[SequenceMachine]]  # mock_domains (the target has them) -> the class
    profile: str                                    # the guest profile whose kernel it runs on (harness/vm)
    roles: dict[str, str] | None = None             # the PCI roles its lockstep binds; None: the lockstep's


# kind -> machine, filled by the modules that define the machines (the package's
# __init__ imports them): this module knows none of them.
MACHINES: dict[str, MachineKind] = {}


class UnknownMachine(ValueError):
    """A kind no machine is registered for."""


def register(machine: MachineKind) -> None:
    """Add ``machine``; ValueError for a kind registered already, UnknownRole for a role
    the registry (harness.backends.roles) does not declare."""
    if machine.kind in MACHINES:
        raise ValueError(f"a fuzz machine {machine.kind!r} is registered already")
    for role in (machine.roles or {}).values():
        roles.check(role)
    MACHINES[machine.kind] = machine


def find_machine(kind: str) -> MachineKind:
    try:
        return MACHINES[kind]
    except KeyError:
        raise UnknownMachine(f"no fuzz machine {kind!r} (known: {', '.join(sorted(MACHINES)) or 'none'})") from None


def make_machine(lockstep: Lockstep, invalid_share: float = 0.2, mock_domains: bool = True,
                 after_step: Callable[[], str] | None = None, kind: str = "iommufd") -> type[SequenceMachine]:
    """The ``kind`` machine (one of MACHINES) bound to ``lockstep``; UnknownMachine for another kind."""
    return bind(find_machine(kind).build(mock_domains), lockstep, invalid_share, after_step)
