"""What a unit leaves on disk so that re-running a batch is safe: fingerprints, done.json, attempts.

`done.json` is the unit's receipt. It is written (atomically) only after the output checked out,
and it records the fingerprint of everything that decides the output: the input files' sizes and
mtimes, the settings and the nrconvert version. A unit is skipped only when the receipt's
fingerprint matches *and* the output is still the file the receipt describes, so editing a photo,
changing a setting, upgrading nrconvert or deleting the GLB re-runs that unit and nothing else.

`attempts.json` records every attempt of every batch run (host, worker and child pid, exit code,
fingerprint). An attempt resumes (`--resume`) only when an earlier one ran on the same
fingerprint, and a record with no exit code is an attempt whose worker died under it.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from .units import Unit


def fingerprint(unit: Unit) -> tuple[str, dict]:
    """(hex digest, {"files", "bytes"}) of the unit's inputs, settings, kind and nrconvert version."""
    entries = []
    for root in unit.inputs:
        entries.extend(_tree(Path(root)))
    payload = {"kind": unit.kind, "settings": unit.settings, "version": __version__, "inputs": entries}
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    return digest, {"files": len(entries), "bytes": sum(e[2] for e in entries)}


def _tree(root: Path) -> list[tuple[str, str, int, int]]:
    """(root name, relative path, size, mtime_ns) of every file under `root` (symlinks followed)."""
    if root.is_file():
        st = root.stat()
        return [(root.name, "", st.st_size, st.st_mtime_ns)]
    out = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder, name)
            try:
                st = path.stat()
            except FileNotFoundError:  # a dangling link: not an input
                continue
            out.append((root.name, path.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns))
    return out


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict, what: str) -> None:
    from ..export.container import atomic_write  # numpy + pygltflib: not on every CLI start

    atomic_write(path, (json.dumps(data, indent=2) + "\n").encode(), what)


def read_done(unit: Unit) -> dict | None:
    return _read_json(unit.done_file)


def is_done(unit: Unit, digest: str) -> bool:
    """True when done.json matches these inputs and the output is still the file it describes."""
    done = read_done(unit)
    if done is None or done.get("fingerprint") != digest:
        return False
    try:
        st = unit.output.stat()
    except OSError:
        return False
    return st.st_size == done.get("output_size") and st.st_mtime_ns == done.get("output_mtime_ns")


def write_done(unit: Unit, digest: str, inputs: dict, batch_run: str, seconds: float) -> dict:
    st = unit.output.stat()
    history = run_records(unit, batch_run)
    done = {
        "unit": unit.id, "kind": unit.kind, "output": str(unit.output), "output_size": st.st_size,
        "output_mtime_ns": st.st_mtime_ns, "fingerprint": digest, "inputs": inputs,
        "settings": unit.settings, "nrconvert_version": __version__, "command": unit.argv,
        "batch_run": batch_run, "attempts": len(history), "history": history,
        "seconds": round(seconds, 2), "finished": _now(),
    }
    _write_json(unit.done_file, done, "the unit's done.json")
    return done


@dataclass
class Attempt:
    seq: int  # 1, 2, ... over the unit's whole history: names its log file
    number: int  # 1, 2, ... within this batch run: what retry policies count
    resume: bool  # an earlier attempt on the same fingerprint left stages in the work folder


def start_attempt(unit: Unit, digest: str, batch_run: str) -> Attempt:
    """Record a new attempt of the unit (kept across batch runs, one list per unit)."""
    records = (_read_json(unit.attempts_file) or {}).get("records", [])
    attempt = Attempt(seq=len(records) + 1,
                      number=1 + sum(1 for r in records if r.get("run") == batch_run),
                      resume=any(r.get("fingerprint") == digest for r in records))
    records.append({"seq": attempt.seq, "run": batch_run, "attempt": attempt.number, "fingerprint": digest,
                    "host": socket.gethostname(), "worker_pid": os.getpid(), "pid": None,
                    "resume": attempt.resume, "started": _now(), "ended": None, "exit_code": None})
    _write_json(unit.attempts_file, {"records": records}, "the unit's attempts.json")
    return attempt


def update_attempt(unit: Unit, seq: int, **fields) -> None:
    data = _read_json(unit.attempts_file) or {"records": []}
    for record in data["records"]:
        if record.get("seq") == seq:
            record.update(fields)
    _write_json(unit.attempts_file, data, "the unit's attempts.json")


def finish_attempt(unit: Unit, seq: int, exit_code: int) -> None:
    update_attempt(unit, seq, ended=_now(), exit_code=exit_code)


def run_records(unit: Unit, batch_run: str) -> list[dict]:
    """This batch run's attempts of the unit, oldest first."""
    data = _read_json(unit.attempts_file) or {}
    return [r for r in data.get("records", []) if r.get("run") == batch_run]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
