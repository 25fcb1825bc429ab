"""The stateful fuzzers: machines whose rules are uAPI operations, driven by Hypothesis.

Every rule writes one step in the case format (docs/case-format.md) with
``expect: any``, runs it on every backend of the lockstep at once, and fails when
the backends' normalised results differ.  A machine keeps the *names* steps bind
(``$iommufd1``, ``$ioas2``, ``$buf3``, ``$group4``) by what they stand for; each
backend resolves a name to its own fd, id or address, so a name is the (kernel
handle, model handle) pair.  The steps run so far are kept, so a failure is a
case file as it stands.

Hypothesis draws a whole sequence as one compact value, a *tape* of bytes
(``tape_strategy``), and the machine reads it a window of ``WINDOW`` bytes per
step (``Choices``): the window's first byte picks a rule among those whose
precondition holds (0: no step), the rule reads its arguments from the rest, and
bytes past the window read as zeros.  Every choice puts its simplest option at 0,
so Hypothesis's shrinking (bytes towards zero, the tape shorter) drops steps and
moves arguments to their valid side.  One draw per sequence is far cheaper than a
RuleBasedStateMachine's draws per step (docs/fuzz.md, "Speed").

Arguments are drawn mostly valid; ``invalid_share`` of the steps take one
argument from its boundary and invalid side (sizes around the minimum, unknown
flag bits, reserved fields, ids of destroyed or wrong-type objects, IOVAs at the
range edges and wrapping around).

The machines share this plumbing and are found by kind in ``MACHINES``, which
their modules fill: ``iommufd`` (harness/fuzz/iommufd_rules.py, in a guest with
mock domains) and ``vfio`` (harness/fuzz/vfio_rules.py: container, group, device
and cdev ioctls and sysfs moves, in a guest with a vIOMMU).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from hypothesis import strategies as st

from ..backends import roles
from .lockstep import Lockstep

PAGE = 4096
HUGE = 2 << 20
U64_MAX = (1 << 64) - 1
WINDOW = 16      # tape bytes per step: the rule byte and the arguments' (what a rule reads past it is 0)

T = TypeVar("T")


class Divergence(AssertionError):
    """The backends disagreed (or the kernel splatted) at the last of ``steps``."""

    def __init__(self, summary: str, steps: list[dict[str, Any]]):
        super().__init__(summary)
        self.summary, self.steps = summary, list(steps)


def hex_(v: int) -> str:
    """Addresses and lengths as a case file spells them."""
    return f"{v:#x}"


def user_va(buf: str, offset: int) -> str:
    """An address ``offset`` into ``buf``.  Machines map their buffers with ``align: HUGE``:
    automatic IOVAs keep the alignment of user_va (io_pagetable.c:136-141), and where mmap()
    puts a buffer is the target's choice (ASLR), so both sides see the same alignment only
    from an aligned start."""
    return f"${buf} + {offset:#x}"


class Choices:
    """One step's window of the tape.  Each draw reads the next bytes (zeros past the end) and
    maps 0 to its first, simplest option."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes):
        self.buf, self.pos = buf, 0

    def below(self, n: int) -> int:
        """0 .. n-1 (0 for n <= 1, reading nothing)."""
        if n <= 1:
            return 0
        width = 1 if n <= 1 << 8 else 2 if n <= 1 << 16 else 4 if n <= 1 << 32 else 8
        v = int.from_bytes(self.buf[self.pos:self.pos + width], "little")
        self.pos += width
        return v % n

    def between(self, lo: int, hi: int) -> int:
        return lo + self.below(hi - lo + 1)

    def coin(self) -> bool:
        return self.below(2) == 1

    def pick(self, options: Sequence[T]) -> T:
        return options[self.below(len(options))]

    def chance(self, p: float) -> bool:
        """True ``p`` of the time; shrinks to False."""
        return self.below(256) >= 256 - round(p * 256)

    def blob(self, max_len: int) -> bytes:
        """Up to ``max_len`` arbitrary bytes, from a 16-bit seed (seed 0: zeros)."""
        n, seed = self.below(max_len + 1), self.below(1 << 16)
        return random.Random(seed).randbytes(n) if seed else bytes(n)

    def draw(self, gen: Any) -> Any:
        """``gen(self)`` for a generator (a callable: ``one_of``, ``ints``, a lambda), else ``gen`` itself."""
        return gen(self) if callable(gen) else gen


Gen = Callable[[Choices], Any]


def one_of(*options: Any) -> Gen:
    """One of ``options`` (each a value or a generator), the first the simplest."""
    return lambda c: c.draw(c.pick(options))


def ints(lo: int, hi: int, scale: int = 1) -> Gen:
    """``lo`` .. ``hi`` times ``scale``."""
    return lambda c: c.between(lo, hi) * scale


class Fields:
    """One step's arguments: at most one of them, ``share`` of the time, from its
    invalid side, so a failing call fails for one reason."""

    def __init__(self, c: Choices, names: list[str], share: float):
        self.c = c
        self.bad = c.pick(names) if names and c.chance(share) else None

    def get(self, name: str, valid: Any, invalid: Any) -> Any:
        """``valid`` or ``invalid`` (values or generators, Choices.draw) as ``name`` is good or bad."""
        return self.c.draw(invalid if name == self.bad else valid)

    def obj(self, name: str, handle: str) -> str:
        """An object id: the one saved, or one no object has."""
        return str(self.get(name, f"${handle}", one_of(f"${handle} + 1000", "0", "U32_MAX")))


def rule(fn: Callable[..., None]) -> Callable[..., None]:
    """A machine method ``(self, c: Choices)`` that writes a step (or a few)."""
    fn._fuzz_rule = True  # type: ignore[attr-defined]
    return fn


def precondition(when: Callable[[Any], Any]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The rule runs only where ``when(machine)`` is true."""
    def mark(fn: Callable[..., None]) -> Callable[..., None]:
        fn._fuzz_when = when  # type: ignore[attr-defined]
        return fn
    return mark


def tape_strategy(steps: int) -> st.SearchStrategy[bytes]:
    """A sequence of ``steps // 2`` to ``steps`` steps after ``setup``: one bytes draw."""
    return st.binary(min_size=WINDOW * (1 + steps // 2), max_size=WINDOW * (1 + steps))


class SequenceMachine:
    """What every machine does with a step: name what it binds, run it in lockstep, keep it.
    A machine subclasses it, overrides ``setup`` (the first window) and marks its rules
    with ``@rule`` (and ``@precondition``)."""

    lockstep: Lockstep
    share: float = 0.2
    after_step: Callable[[], str] | None = None
    RULES: ClassVar[tuple[tuple[Callable[..., None], Callable[[Any], Any] | None], ...]] = ()

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        found: dict[str, tuple[Callable[..., None], Callable[[Any], Any] | None]] = {}
        for klass in reversed(cls.__mro__):    # base classes first, each in definition order
            for name, fn in vars(klass).items():
                if getattr(fn, "_fuzz_rule", False):
                    found[name] = (fn, getattr(fn, "_fuzz_when", None))
        cls.RULES = tuple(found.values())

    def __init__(self) -> None:
        self.lockstep.start()
        self.steps: list[dict[str, Any]] = []
        self.bound: set[str] = set(self.lockstep.roles)
        self.counter = 0

    def setup(self, c: Choices) -> None:
        """Where every sequence starts (the tape's first window)."""

    def run(self, tape: bytes) -> None:
        """The steps ``tape`` spells; Divergence at the first one the backends disagree on."""
        self.setup(Choices(tape[:WINDOW]))
        for at in range(WINDOW, len(tape), WINDOW):
            c = Choices(tape[at:at + WINDOW])
            which = c.below(256)
            if not which:
                continue     # no step here (what shrinking makes of a step it drops)
            enabled = [fn for fn, when in self.RULES if when is None or when(self)]
            if enabled:
                enabled[(which - 1) % len(enabled)](self, c)

    def teardown(self) -> None:
        self.lockstep.finish()

    def name(self, stem: str) -> str:
        self.counter += 1
        return f"{stem}{self.counter}"

    def do(self, raw: dict[str, Any]) -> bool:
        """Run the step on every backend; Divergence where they disagree, else whether it
        succeeded (a machine records the object a step opens or makes only when it did: a
        name bound to a failed call's -1 would give later steps nothing but EBADF)."""
        raw.setdefault("expect", "any")
        self.steps.append(raw)
        hook = type(self).after_step
        problem = self.lockstep.run_raw(raw, self.bound, len(self.steps) - 1, hook)
        if problem:
            raise Divergence(problem, self.steps)
        return self.lockstep.succeeded()

    def fields(self, c: Choices, names: list[str]) -> Fields:
        return Fields(c, names, self.share)


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
