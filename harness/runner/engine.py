"""Run one case on one backend into a Trace."""

from __future__ import annotations

import contextlib
import ctypes
import errno as _errno
import struct as _struct
import time
from collections.abc import Mapping
from typing import Any

from .. import uapi
from ..backends.base import MEMFD_NAME, Backend, OpResult
from ..cases.case import (
    DATA_TYPES,
    MAX_TRANSFER,
    U64_MAX,
    ArrayValue,
    Case,
    Expectation,
    Matcher,
    Step,
    int_range,
)
from ..cases.expr import Expr, render, using_abi
from ..uapi import abi
from .deadline import CaseTimeout, alarm
from .topology import bind_roles, unmet
from .trace import ERROR, FAIL, SKIP, StepRecord, Trace

_FORMATS = {1: "B", 2: "H", 4: "I", 8: "Q"}
PAGE = 4096


class HarnessError(Exception):
    """The case could not be carried out (an unbound value, a bad expression result)."""


class Unbound(HarnessError):
    pass


def evaluate(v: Any, env: Mapping[str, Any]) -> Any:
    if isinstance(v, Expr):
        try:
            return v.eval(env)
        except Exception as e:
            raise HarnessError(f"{v.text}: {e}") from None
    if isinstance(v, list):
        acc = 0
        for x in v:
            acc |= int(evaluate(x, env))
        return acc
    return v


def bound(env: Mapping[str, Any], name: str) -> Any:
    if name not in env:
        raise Unbound(f"${name} is not bound (the step that binds it did not run or failed)")
    return env[name]


def _as_int(v: Any) -> int:
    if hasattr(v, "bdf") and not isinstance(v, int):
        raise HarnessError(f"{v} is a PCI function, not a number")
    return int(v)


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else k))
    elif isinstance(d, list) and not all(isinstance(x, int) for x in d):
        for i, v in enumerate(d):
            out.update(flatten(v, f"{prefix}[{i}]"))
    else:
        out[prefix] = d
    return out


def _field_type(cls: Any, name: str) -> Any:
    """The ctype of member ``name``, looking into anonymous unions and structs as C does."""
    for fname, ctype, *_ in cls._fields_:
        if fname == name:
            return ctype
        if fname in getattr(cls, "_anonymous_", ()):
            found = _field_type(ctype, name)
            if found is not None:
                return found
    return None


def _set_fields(obj: Any, args: Mapping[str, Any], env: Mapping[str, Any], pointers: Mapping[str, int]) -> None:
    """Fill ``obj`` from a case's ``args``; ``pointers`` maps the dotted paths of the pointer
    fields given as memory to the addresses that memory got."""
    for name, v in args.items():
        if name in pointers:
            setattr(obj, name, pointers[name])
        elif isinstance(v, ArrayValue):
            arr = getattr(obj, name)
            for i, x in enumerate(v):
                arr[i] = _fit(f"{name}[{i}]", _as_int(evaluate(x, env)), type(arr)._type_)  # type: ignore[attr-defined]
        elif isinstance(v, dict):
            _set_fields(getattr(obj, name), v, env,
                        {p[len(name) + 1:]: a for p, a in pointers.items() if p.startswith(name + ".")})
        else:
            value = _as_int(evaluate(v, env))
            cur = getattr(obj, name)
            if isinstance(cur, ctypes.Array):
                raise HarnessError(f"{name} is an array; set its elements through tail/data")
            setattr(obj, name, _fit(name, value, _field_type(type(obj), name)))


def _fit(name: str, value: int, ctype: Any) -> int:
    """``value`` if the field's C type holds it: a negative value in an unsigned field is an
    error, never masked to all ones."""
    signed = ctype in (ctypes.c_int32, ctypes.c_int64, ctypes.c_int16, ctypes.c_int8)
    lo, hi = int_range(ctypes.sizeof(ctype), signed)
    if not lo <= value <= hi:
        kind = f"{'__s' if signed else '__u'}{ctypes.sizeof(ctype) * 8}"
        raise HarnessError(f"{name} = {_fmt(value)} does not fit in a {kind} field")
    return value


def _size(what: str, value: int, limit: int = MAX_TRANSFER) -> int:
    """A byte count the harness holds or passes as a size_t: refused past ``limit``."""
    if not 0 <= value <= limit:
        raise HarnessError(f"{what} {_fmt(value)} is outside 0 to {limit:#x}")
    return value


def pack_data(spec: Mapping[str, Any], env: Mapping[str, Any]) -> bytes:
    """The bytes of a ``data:``/``tail:`` spec (``hex`` or a typed list)."""
    (kind, items), = spec.items()
    if kind == "hex":
        return bytes(items)
    width, signed = DATA_TYPES[kind]
    fmt = "<" + (_FORMATS[width].lower() if signed else _FORMATS[width])
    lo, hi = int_range(width, signed)
    out = []
    for i, x in enumerate(items):
        value = _as_int(evaluate(x, env))
        if not lo <= value <= hi:
            raise HarnessError(f"{kind}[{i}] = {_fmt(value)} does not fit in a {kind}")
        out.append(_struct.pack(fmt, value))
    return b"".join(out)


def _union_member(io: abi.Ioctl, fields: Mapping[str, Any]) -> str | None:
    """iommu_test_cmd's union is read through the member its op selects (selftest.c)."""
    if io.name == "IOMMU_TEST_CMD":
        from ..uapi import iommufd_test
        return iommufd_test.TEST_OP_MEMBER.get(int(fields.get("op", 0)))
    return None


def decode_struct(io: abi.Ioctl, data: bytes) -> dict[str, Any]:
    assert io.struct is not None
    d = io.struct.from_buffer_prefix(data).to_dict()  # type: ignore[attr-defined]
    member = _union_member(io, d)
    if member is not None or io.name == "IOMMU_TEST_CMD":
        # All members of the anonymous union alias the same bytes: keep the one the op reads.
        union = next(c for n, c, *_ in io.struct._fields_ if n in io.struct._anonymous_)  # type: ignore[attr-defined]
        for name, *_ in union._fields_:
            if name != member:
                d.pop(name, None)
    return flatten(d)


class Runner:
    def __init__(self, backend: Backend):
        self.backend = backend
        # The release the backend's kernel is (or the model mirrors): picks per-kernel
        # expectations, and the uAPI layouts and sizes the steps are built with.
        self.release = backend.facts().kernel
        self.abi = uapi.for_kernel(self.release)

    def bindings(self, case: Case) -> dict[str, Any] | str:
        """What a case starts with bound (its variant's parameters, its topology roles), or
        why it cannot run on this backend."""
        topo = self.backend.topology() if case.requires.topology else None
        reason = unmet(case, self.backend, topo)
        if reason:
            return reason
        env: dict[str, Any] = dict(case.params)
        roles = bind_roles(case.requires.topology, topo, self.backend.may_touch) if topo else {}
        assert not isinstance(roles, str)
        env.update(roles)
        return env

    def run(self, case: Case, timeout: float | None = None) -> Trace:
        """The case's trace.  Past ``timeout`` seconds (None: no limit) it fails, naming the
        step it was in; its cleanup then gets as long again, and the backend is reset."""
        trace = Trace(case.test_id, self.backend.name)
        env = self.bindings(case)
        if isinstance(env, str):
            trace.status, trace.reason = SKIP, env
            return trace
        deadline = time.monotonic() + timeout if timeout else None
        current: Step | None = case.steps[0] if case.steps else None
        interrupted = False
        try:
            with alarm(timeout if self.backend.interruptible else None):
                for step in case.steps:
                    current = step
                    if deadline is not None and time.monotonic() > deadline:
                        raise CaseTimeout
                    rec = self._step(step, env)
                    trace.steps.append(rec)
                    if rec.failures:
                        trace.status = FAIL
                        trace.reason = (f"step {step.index + 1} ({rec.label}, line {step.line}): "
                                        + "; ".join(rec.failures))
                        break
        except HarnessError as e:
            where = f" ({current.label()}, line {current.line})" if current is not None else ""
            trace.status, trace.reason = ERROR, f"step {len(trace.steps) + 1}{where}: {e}"
        except CaseTimeout:
            trace.status, trace.reason = FAIL, _timed_out(timeout, current)
        except BaseException as e:
            interrupted = not isinstance(e, Exception)
            raise
        finally:
            if interrupted:
                # Ctrl-C or SIGTERM mid-step: the backend may be mid-request (a guest agent's reply
                # still unread), so its cleanup may fail; the interrupt is what propagates, never
                # that failure (it read as a hung kernel: a mutant scored "timed out").
                with contextlib.suppress(Exception):
                    self._cleanup(case, env, trace, timeout)
            else:
                self._cleanup(case, env, trace, timeout)
        return trace

    def _cleanup(self, case: Case, env: dict[str, Any], trace: Trace, timeout: float | None) -> None:
        current: Step | None = None
        try:
            with alarm(timeout if self.backend.interruptible else None):
                for step in case.cleanup:
                    current = step
                    try:
                        rec = self._step(step, env)
                    except Unbound:
                        continue  # what it would undo never happened
                    except HarnessError as e:
                        rec = StepRecord(step.index, step.line, step.kind, step.label(), failures=[str(e)])
                    rec.cleanup = True
                    trace.steps.append(rec)
        except CaseTimeout:
            if current is None:
                return   # no cleanup step ran, none is cut short
            trace.steps.append(StepRecord(current.index, current.line, current.kind, current.label(),
                                          failures=[_timed_out(timeout, current)], cleanup=True))
        finally:
            self.backend.reset()

    def execute(self, step: Step, env: dict[str, Any]) -> StepRecord:
        """One step outside a case (the fuzzer's lockstep): ``env`` holds what earlier steps bound."""
        return self._step(step, env)

    # -- steps -------------------------------------------------------------
    def _step(self, step: Step, env: dict[str, Any]) -> StepRecord:
        with using_abi(self.abi):
            return self._step_on_abi(step, env)

    def _step_on_abi(self, step: Step, env: dict[str, Any]) -> StepRecord:
        rec = StepRecord(step.index, step.line, step.kind, step.label(), from_fixture=step.from_fixture)
        handler = getattr(self, f"_do_{step.kind}")
        res, sent, size_value = handler(step, env, rec)
        rec.ret, rec.errno = res.ret, res.errno_name
        rec.where = getattr(getattr(self.backend, "last_error", None), "where", "") if res.errno else ""
        rec.gates = tuple(sorted(getattr(self.backend, "last_gates", ())))
        expect = step.expect.for_kernel(self.release)
        if expect is None:
            rec.failures = [f"no expectation for kernel {self.release} "
                            f"(the step expects per kernel: {', '.join(r for r, _ in step.expect.by_kernel)})"]
            return rec
        rec.failures = check(expect, rec, res, sent, size_value, env)
        if not rec.failures:
            if step.bind:
                env[step.bind] = res.ret
            for name, path in step.save.items():
                if path not in rec.out:
                    rec.failures.append(f"save {name}: no output field {path}")
                else:
                    env[name] = rec.out[path]
        return rec

    def _do_open(self, step: Step, env: dict[str, Any], rec: StepRecord) -> tuple[OpResult, bytes, int]:
        path = render(step.spec["open"], env)
        rec.request = {"path": step.spec["open"]}
        return self.backend.open(path), b"", 0

    def _do_close(self, step: Step, env: dict[str, Any], rec: StepRecord) -> tuple[OpResult, bytes, int]:
        fd = _as_int(bound(env, step.spec["close"]))
        rec.request = {"fd": fd}
        return self.backend.close(fd), b"", 0

    def _do_mmap(self, step: Step, env: dict[str, Any], rec: StepRecord) -> tuple[OpResult, bytes, int]:
        length = _size("mmap length", _as_int(evaluate(step.spec["mmap"], env)), U64_MAX)
        if "fd" in step.spec:
            fd = _as_int(bound(env, step.spec["fd"]))
            offset = _size("mmap offset", _as_int(evaluate(step.spec["offset"], env)), U64_MAX)
            shared = not step.spec["private"]
            rec.request = {"fd": fd, "length": length, "offset": offset, **({} if shared else {"private": True})}
            res = self.backend.mmap_fd(fd, length, offset, shared)
            if res.ok and step.bind:
                env[f"__len_{step.bind}"] = length
            return res, b"", 0
        align = int(step.spec.get("align", 0))
        rec.request = {"length": length, **({"align": align} if align else {})}
        res = self.backend.mmap(length, align)
        if res.ok and step.bind:
            env[f"__len_{step.bind}"] = length
        return res, b"", 0

    def _in_mapping(self, step: Step, env: dict[str, Any]) -> tuple[int, int]:
        """The address and length a munmap/mprotect step names: its mapping plus ``offset:``,
        ``length:`` bytes (default: the rest of the mapping, or a page if its length is unknown)."""
        name = step.spec[step.kind]
        offset = _as_int(evaluate(step.spec.get("offset", 0), env))
        if "length" in step.spec:
            length = _as_int(evaluate(step.spec["length"], env))
        else:
            length = max(env.get(f"__len_{name}", PAGE) - offset, 0)
        return _as_int(bound(env, name)) + offset, length

    def _do_munmap(self, step: Step, env: dict[str, Any], rec: StepRecord) -> tuple[OpResult, bytes, int]:
        addr, length = self._in_mapping(step, env)
        rec.request = {"addr": addr, "length": length}
        return self.backend.munmap(addr, length), b"", 0

    def _do_mprotect(self, step: Step, env: dict[str, Any], rec: StepRecord) -> tuple[OpResult, bytes, int]:
        addr, length = self._in_mapping(step, env)
        prot = _as_int(evaluate(step.spec["prot"], env))
        rec.request = {"addr": addr, "length": length, "prot": prot}
        return self.backend.mprotect(addr, length, prot), b"", 0

    def _do_write_mem(self, step: Step, env: dict[str, Any], rec: StepRecord) -> tuple[OpResult, bytes, int]:
        addr = _as_int(evaluate(step.spec["at"], env))
        if "fd" in step.spec:
            fd = _as_int(evaluate(step.spec["fd"], env))
            rec.request = {"addr": addr, "fd": fd}
            return self.backend.write_mem(addr, fd.to_bytes(4, "little", signed=True)), b"", 0
        rec.request = {"addr": addr, "hex": step.spec["hex"].hex()}
        return self.backend.write_mem(addr, step.spec["hex"]), b"", 0

    def _do_read_mem(self, step: Step, env: dict[str, Any], rec: StepRecord) -> tuple[OpResult, bytes, int]:
        addr = _as_int(evaluate(step.spec["at"], env))
        length = _size("read_mem length", _as_int(evaluate(step.spec["length"], env)))
        rec.request = {"addr": addr, "length": length}
        res = self.backend.read_mem(addr, length)
        rec.out = {"data": res.data.hex()}
        return res, b"", 0

    def _do_eventfd(self, step: Step, env: dict[str, Any], rec: StepRecord) -> tuple[OpResult, bytes, int]:
        init = _as_int(evaluate(step.spec["eventfd"], env))
        rec.request = {"initval": init}
        return self.backend.eventfd(init), b"", 0

    def _do_memfd(self, step: Step, env: dict[str, Any], rec: StepRecord) -> tuple[OpResult, bytes, int]:
        size = _as_int(evaluate(step.spec["memfd"], env))
        name = render(step.spec.get("name", MEMFD_NAME), env)
        rec.request = {"size": size, "name": name}
        return self.backend.memfd(size, name), b"", 0

    def _do_read(self, step: Step, env: dict[str, Any], rec: StepRecord) -> tuple[OpResult, bytes, int]:
        fd = _as_int(bound(env, step.spec["read"]))
        length = _as_int(evaluate(step.spec["length"], env))
        rec.request = {"fd": fd, "length": length}
        res = self.backend.read(fd, length)
        rec.out = {"data": res.data.hex()}
        return res, b"", 0

    def _do_write(self, step: Step, env: dict[str, Any], rec: StepRecord) -> tuple[OpResult, bytes, int]:
        fd = _as_int(bound(env, step.spec["write"]))
        rec.request = {"fd": fd, "hex": step.spec["hex"].hex()}
        return self.backend.write(fd, step.spec["hex"]), b"", 0

    def _do_pread(self, step: Step, env: dict[str, Any], rec: StepRecord) -> tuple[OpResult, bytes, int]:
        fd = _as_int(bound(env, step.spec["pread"]))
        offset = _size("pread offset", _as_int(evaluate(step.spec["offset"], env)), U64_MAX)
        length = _size("pread length", _as_int(evaluate(step.spec["length"], env)))
        rec.request = {"fd": fd, "offset": offset, "length": length}
        res = self.backend.pread(fd, length, offset)
        data = res.data
        if "mask" in step.spec:
            # Only the bits the case names are compared: the rest is the hardware's.
            mask = _as_int(evaluate(step.spec["mask"], env))
            data = (int.from_bytes(data, "little") & mask).to_bytes(len(data), "little")
        rec.out = {"data": data.hex(), "value": int.from_bytes(data, "little")}
        return res, b"", 0

    def _do_pwrite(self, step: Step, env: dict[str, Any], rec: StepRecord) -> tuple[OpResult, bytes, int]:
        fd = _as_int(bound(env, step.spec["pwrite"]))
        offset = _size("pwrite offset", _as_int(evaluate(step.spec["offset"], env)), U64_MAX)
        rec.request = {"fd": fd, "offset": offset, "hex": step.spec["hex"].hex()}
        return self.backend.pwrite(fd, step.spec["hex"], offset), b"", 0

    def _do_sysfs_read(self, step: Step, env: dict[str, Any], rec: StepRecord) -> tuple[OpResult, bytes, int]:
        rec.request = {"path": step.spec["sysfs_read"]}
        res = self.backend.sysfs_read(render(step.spec["sysfs_read"], env))
        rec.out = {"text": res.data.decode(errors="replace").strip()}
        return res, b"", 0

    def _do_sysfs_write(self, step: Step, env: dict[str, Any], rec: StepRecord) -> tuple[OpResult, bytes, int]:
        value = render(step.spec["value"], env)
        rec.request = {"path": step.spec["sysfs_write"], "value": value}
        return self.backend.sysfs_write(render(step.spec["sysfs_write"], env), value), b"", 0

    def _do_raw_ioctl(self, step: Step, env: dict[str, Any], rec: StepRecord) -> tuple[OpResult, bytes, int]:
        number = _as_int(evaluate(step.spec["raw_ioctl"], env))
        fd = _as_int(bound(env, step.spec["fd"]))
        rec.request = {"fd": fd, "number": number}
        if "pointer" in step.spec:
            rec.request["pointer"] = _as_int(evaluate(step.spec["pointer"], env))
            return self.backend.ioctl(fd, number, rec.request["pointer"]), b"", 0
        rec.request["hex"] = step.spec["hex"].hex()
        res = self.backend.ioctl(fd, number, step.spec["hex"])
        rec.out = {"data": res.data.hex()}
        return res, step.spec["hex"], len(step.spec["hex"])

    def _do_ioctl(self, step: Step, env: dict[str, Any], rec: StepRecord) -> tuple[OpResult, bytes, int]:
        io = self.abi.IOCTLS.get(step.spec["ioctl"])
        if io is None:
            raise HarnessError(f"Linux {self.release} has no {step.spec['ioctl']}")
        fd = _as_int(bound(env, step.spec["fd"]))
        spec = step.spec
        rec.request = {"fd": fd}
        if "pointer" in spec:
            ptr = _as_int(evaluate(spec["pointer"], env))
            rec.request["pointer"] = ptr
            return self.backend.ioctl(fd, io.number, ptr), b"", 0
        if io.arg in (abi.ARG_VALUE, abi.ARG_NONE):
            value = _as_int(evaluate(spec.get("value", 0), env))
            rec.request["value"] = value
            return self.backend.ioctl(fd, io.number, value), b"", 0
        if io.arg == abi.ARG_INT_PTR:
            value = _as_int(evaluate(spec.get("int", 0), env))
            rec.request["int"] = value
            return self.backend.ioctl(fd, io.number, value.to_bytes(4, "little", signed=True)), b"", 0
        if io.arg == abi.ARG_U32_PTR:
            value = _as_int(evaluate(spec.get("value", 0), env))
            rec.request["value"] = value
            return self.backend.ioctl(fd, io.number, value.to_bytes(4, "little")), b"", 0
        if io.arg == abi.ARG_STRING:
            text = render(spec.get("string", ""), env)
            rec.request["string"] = spec.get("string", "")
            return self.backend.ioctl(fd, io.number, text.encode() + b"\0"), b"", 0
        return self._struct_ioctl(io, fd, step, env, rec)

    def _struct_ioctl(self, io: abi.Ioctl, fd: int, step: Step, env: dict[str, Any],
                      rec: StepRecord) -> tuple[OpResult, bytes, int]:
        assert io.struct is not None
        spec = step.spec
        args = spec.get("args", {})
        readback: dict[str, tuple[int, int, Any]] = {}
        pointers = self._place_all(args, io.pointers, env, readback)
        obj = io.struct()
        typed = self.abi.STRUCTS[spec["data"]["struct"]] if "struct" in spec.get("data", {}) else None
        if typed is not None:
            fields = spec["data"]["fields"]
            dobj = typed()
            _set_fields(dobj, fields, env, self._place_all(fields, abi.pointer_fields(typed), env, readback, "data."))
            data = bytes(dobj)
        else:
            data = pack_data(spec["data"], env) if "data" in spec else b""
        tail = pack_data(spec["tail"], env) if "tail" in spec else b""
        if io.size_field and io.size_field not in args:
            setattr(obj, io.size_field, io.sizeof + len(data) + len(tail))
        _set_fields(obj, args, env, pointers)
        buf = bytearray(bytes(obj) + data + tail)
        size_value = int(getattr(obj, io.size_field)) if io.size_field else len(buf)
        if "buffer" in spec:
            b = spec["buffer"]
            if "length" in b:
                n = _size("buffer length", _as_int(evaluate(b["length"], env)))
                buf = buf[:n] if n <= len(buf) else buf + bytearray(n - len(buf))
            if "fill" in b:
                fill = _as_int(evaluate(b["fill"], env)) & 0xFF
                for i in range(size_value, len(buf)):
                    buf[i] = fill
        rec.request.update(flatten(_request_fields(obj, args)))
        if typed is not None:
            rec.request.update(flatten({"data": dobj.to_dict()}))  # the addresses, as pointers get named
        elif data:
            rec.request["data"] = data.hex()
        if tail:
            rec.request["tail"] = tail.hex()
        res = self.backend.ioctl(fd, io.number, bytes(buf))
        rec.out = decode_struct(io, res.data)
        if typed is not None:
            rec.out.update(flatten({"data": typed.from_buffer_prefix(res.data[io.sizeof:]).to_dict()}))  # type: ignore[attr-defined]
        elif len(res.data) > io.sizeof:
            rec.out["data"] = res.data[io.sizeof:].hex()
        for name, (addr, length, elem) in readback.items():
            mem = self.backend.read_mem(addr, length)
            if not mem.ok:
                continue
            if elem is None:
                rec.out[name] = mem.data.hex()
            else:
                n = ctypes.sizeof(elem)
                items = [elem.from_buffer_copy(mem.data[i:i + n]).to_dict() for i in range(0, len(mem.data) - n + 1, n)]
                rec.out.pop(name, None)
                rec.out.update(flatten({name: items}) if items else {})
        return res, bytes(buf), size_value

    def _place_all(self, args: Mapping[str, Any], fields: Mapping[str, abi.PointerField], env: Mapping[str, Any],
                   readback: dict[str, tuple[int, int, Any]], prefix: str = "") -> dict[str, int]:
        """Place the memory of every pointer field (dotted path in ``fields``) ``args`` gives
        as a mapping; its address by path, and what to read back under ``prefix`` + path."""
        out: dict[str, int] = {}
        order = list(args)
        for path in sorted((p for p in fields if p.split(".")[0] in args), key=lambda p: order.index(p.split(".")[0])):
            v: Any = args
            for part in path.split("."):
                v = v.get(part) if isinstance(v, Mapping) else None
            if isinstance(v, dict):
                addr, length, elem = self._place(v, env)
                out[path] = addr
                readback[prefix + path] = (addr, length, elem)
        return out

    def _place(self, v: Mapping[str, Any], env: Mapping[str, Any]) -> tuple[int, int, Any]:
        """Put a pointer field's contents in fresh user memory."""
        elem = None
        if "array" in v:
            elem = self.abi.STRUCTS[v["array"]]
            if "items" in v:
                objs = []
                for it in v["items"]:
                    o = elem()
                    _set_fields(o, it, env, {})
                    objs.append(bytes(o))
                payload = b"".join(objs)
            else:
                count = _as_int(evaluate(v["count"], env))
                payload = bytes(_size(f"{v['array']} array of {count}", ctypes.sizeof(elem) * count))
        elif "bytes" in v:
            payload = bytes(_size("pointer bytes", _as_int(evaluate(v["bytes"], env))))
        else:
            payload = bytes(v["hex"])
        res = self.backend.mmap(max(len(payload), 1))
        if not res.ok:
            raise HarnessError(f"mmap for a pointer field failed: {res.errno_name}")
        if payload:
            w = self.backend.write_mem(res.ret, payload)
            if not w.ok:
                raise HarnessError(f"writing a pointer field's memory failed: {w.errno_name}")
        return res.ret, len(payload), elem


def _timed_out(timeout: float | None, step: Step | None) -> str:
    where = f" in step {step.index + 1} ({step.label()}, line {step.line})" if step else ""
    return f"timed out after {timeout:g} s{where}"


def _request_fields(obj: Any, args: Mapping[str, Any]) -> dict[str, Any]:
    d = obj.to_dict()
    return {k: d[k] for k in d if k in args or k in ("size", "argsz", "flags")}


def _match(m: Matcher, actual: Any, env: Mapping[str, Any]) -> str | None:
    if m.op == "any":
        return None
    want = evaluate(m.value, env)
    if m.op == "eq":
        if isinstance(want, str) and isinstance(actual, str):
            ok = want == actual
        else:
            ok = actual == _as_int(want)
        return None if ok else f"is {_fmt(actual)}, expected {_fmt(want)}"
    want = _as_int(want)
    ok = {
        "has": lambda: actual & want == want, "lacks": lambda: actual & want == 0,
        "ne": lambda: actual != want, "ge": lambda: actual >= want, "gt": lambda: actual > want,
        "le": lambda: actual <= want, "lt": lambda: actual < want,
        "aligned": lambda: want > 0 and actual % want == 0,
    }[m.op]()
    return None if ok else f"is {_fmt(actual)}, expected {m.op} {_fmt(want)}"


def _fmt(v: Any) -> str:
    return f"{v:#x}" if isinstance(v, int) and abs(v) >= 10 else str(v)


def check(e: Expectation, rec: StepRecord, res: OpResult, sent: bytes, size_value: int,
          env: Mapping[str, Any]) -> list[str]:
    fails: list[str] = []
    if e.anything:
        return fails
    got = res.errno_name
    if (getattr(_errno, e.errno) if e.errno else 0) != res.errno:
        fails.append(f"returned {got or 'success'}, expected {e.errno or 'success'}")
        return fails
    for m in e.ret or []:
        msg = _match(m, res.ret, env)
        if msg:
            fails.append(f"ret {msg}")
    for path, matchers in e.out.items():
        if path not in rec.out:
            fails.append(f"{path}: not in the output")
            continue
        for m in matchers:
            msg = _match(m, rec.out[path], env)
            if msg:
                fails.append(f"{path} {msg}")
    if e.untouched_past_size and sent[size_value:] != res.data[size_value:]:
        fails.append(f"bytes past size {size_value} changed: sent {sent[size_value:].hex()}, "
                     f"got {res.data[size_value:].hex()}")
    if e.text is not None and rec.out.get("text") != e.text.strip():
        fails.append(f"text is {rec.out.get('text')!r}, expected {e.text.strip()!r}")
    if e.data is not None and rec.out.get("data") != e.data:
        fails.append(f"data is {rec.out.get('data')}, expected {e.data}")
    return fails


