"""What every case of a corpus does on the model, one hash per test id: the steps it runs (kind,
ioctl, the bytes sent, the result, the output), its merged requirements, its outcome.  Source
lines are left out, so a case rewritten onto fixtures, `extends` or macros hashes the same as
long as it runs the same steps.  ``python3 tests/corpus_traces.py RELEASE [CASES_DIR] [--full]``
prints the table as JSON (the baseline tests/data/corpus-traces.json holds it per release);
``--full`` prints the traces themselves rather than their hashes."""

from __future__ import annotations

import functools
import hashlib
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from harness.cases.loader import Loader  # noqa: E402
from harness.model.backend import ModelBackend  # noqa: E402
from harness.model.topologies import default_facts  # noqa: E402
from harness.runner.engine import Runner  # noqa: E402

RELEASES = ("6.12.117", "7.2.13")


class _Recording(Runner):
    """A runner that also keeps the bytes each step handed the backend."""

    def __getattribute__(self, name: str) -> Any:
        attr = super().__getattribute__(name)
        if not name.startswith("_do_"):
            return attr

        def recorded(step: Any, env: Any, rec: Any) -> Any:
            res, sent, size_value = attr(step, env, rec)
            rec.request = {**rec.request, "sent": bytes(sent).hex(), "size_value": size_value}
            return res, sent, size_value
        return recorded


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in sorted(v.items(), key=lambda kv: str(kv[0]))}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, (int, str, bool)) or v is None:
        return v
    if isinstance(v, bytes):
        return v.hex()
    return repr(v)


def trace_of(case: Any, runner: Runner) -> dict[str, Any]:
    trace = runner.run(case)
    req = asdict(case.requires)
    req["config"], req["nodes"] = sorted(req["config"]), sorted(req["nodes"])
    return {
        "status": trace.status,
        "reason": trace.reason.split(", line ")[0] if trace.reason else "",
        "requires": _plain(req),
        "verified_on": case.verified_on,
        "params": _plain(case.params),
        "steps": [_plain({k: v for k, v in asdict(s).items() if k not in ("line", "from_fixture", "index")})
                  for s in trace.steps],
    }


@functools.cache
def traces(cases_dir: Path, release: str) -> dict[str, dict[str, Any]]:
    """Cached: several tests read the corpus's traces, one run per process does for all of them
    (treat the answer as read-only)."""
    cases, errors = Loader(cases_dir).load_all()
    if errors:
        raise SystemExit("\n".join(map(str, errors)))
    runner = _Recording(ModelBackend(facts=default_facts(release)))
    return {c.test_id: trace_of(c, runner) for c in sorted(cases, key=lambda c: c.test_id)}


def hashes(cases_dir: Path, release: str) -> dict[str, str]:
    return {tid: hashlib.sha256(json.dumps(t, sort_keys=True).encode()).hexdigest()[:16]
            for tid, t in traces(cases_dir, release).items()}


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    release = args[0]
    cases_dir = Path(args[1]) if len(args) > 1 else ROOT / "cases"
    if "--full" in sys.argv[1:]:
        json.dump(traces(cases_dir, release), sys.stdout, indent=1, sort_keys=True)
    else:
        json.dump(hashes(cases_dir, release), sys.stdout, indent=1, sort_keys=True)
