"""One attempt of one unit: skip it if done, else run its command line as a subprocess.

Both runners call `run_attempt`, locally in a thread or remotely inside a Ray task; only the
retry loop differs (a plain loop here, Ray's `max_retries` there). The command runs in its own
process so that a crash, a leak or an out-of-memory kill stays inside it, and its exit code
(errors.py) is what decides between done, retry and give up.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import NrcError, ValidationError, os_error
from .policy import describe, normalise
from .state import fingerprint, finish_attempt, is_done, read_done, start_attempt, update_attempt, write_done
from .units import NRCONVERT, Unit, check_output

DONE, SKIPPED, FAILED = "done", "skipped", "failed"
PARENT_ENV = "NRCONVERT_BATCH_PARENT"  # read by batch/child.py
_TERMINATE_GRACE_S = 30.0


@dataclass
class UnitResult:
    unit_id: str
    order: int
    status: str  # done | skipped (already done) | failed
    exit_code: int = 0
    message: str = ""  # first line of the failure
    attempts: int = 0  # attempts in this batch run (0: skipped)
    seconds: float = 0.0
    log: str = ""  # the last attempt's log file


class RetryableUnitFailure(Exception):
    """A retryable exit code, raised inside a Ray task so that `retry_exceptions` retries it."""

    def __init__(self, result: UnitResult):
        super().__init__(result)  # args = (result,): pickles across Ray processes
        self.result = result

    def __str__(self) -> str:
        return f"unit {self.result.unit_id}: {self.result.message} (exit {self.result.exit_code})"


def command_line(unit: Unit, resume: bool) -> list[str]:
    """The unit's argv as this interpreter runs it; `nrconvert` goes through the child launcher."""
    argv = list(unit.argv) + (["--resume"] if resume else [])
    if argv[0] == NRCONVERT:
        return [sys.executable, "-m", "nrconvert.batch.child", *argv[1:]]
    return argv


def child_env(extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    # Rich wraps at 80 columns without a terminal: keep the "error: ..." line whole for the summary.
    env.update({PARENT_ENV: str(os.getpid()), "COLUMNS": "1000", "PYTHONUNBUFFERED": "1"})
    env.update(extra or {})
    return env


def run_attempt(unit: Unit, batch_run: str, env: dict[str, str] | None = None, on_spawn=None) -> UnitResult:
    """Run the unit once (or skip it); never raises for the unit's own failures.

    A failure to keep the unit's own records (disk full while writing attempts.json or done.json)
    is the unit's failure too, with the same exit code a conversion would give (75 is retryable).
    """
    start = time.time()
    try:
        return _attempt(unit, batch_run, env, on_spawn, start)
    except (NrcError, OSError) as exc:
        if isinstance(exc, OSError):
            exc = os_error(exc, exc.filename or str(unit.state_dir), "the unit's records")
        return UnitResult(unit.id, unit.order, FAILED, exc.exit_code, _first_line(str(exc)),
                          seconds=time.time() - start)


def _attempt(unit: Unit, batch_run: str, env, on_spawn, start: float) -> UnitResult:
    digest, inputs = fingerprint(unit)
    if is_done(unit, digest):
        return already_done(unit, batch_run)
    _make_folders(unit)
    attempt = start_attempt(unit, digest, batch_run)
    if not attempt.resume and unit.workdir is not None and unit.workdir.exists():
        shutil.rmtree(unit.workdir)  # stages of other inputs (see Unit.workdir)
    log = unit.log_file(attempt.seq)
    code = _run(command_line(unit, attempt.resume), log, env,
                lambda pid: update_attempt(unit, attempt.seq, pid=pid, log=str(log)), on_spawn)
    finish_attempt(unit, attempt.seq, code)
    seconds = time.time() - start
    if code == 0:
        problem = check_output(unit)
        if problem is None:
            done = write_done(unit, digest, inputs, batch_run, seconds)
            return UnitResult(unit.id, unit.order, DONE, 0, "", done["attempts"], seconds, str(log))
        code, message = ValidationError.exit_code, problem
    else:
        message = error_message(log, code)
    return UnitResult(unit.id, unit.order, FAILED, code, message, attempt.number, seconds, str(log))


def already_done(unit: Unit, batch_run: str) -> UnitResult:
    """Skipped; or done, when this very batch run wrote done.json (a retry after the worker
    died between writing it and returning)."""
    done = read_done(unit) or {}
    if done.get("batch_run") == batch_run:
        return UnitResult(unit.id, unit.order, DONE, attempts=int(done.get("attempts", 0)),
                          seconds=float(done.get("seconds", 0.0)))
    return UnitResult(unit.id, unit.order, SKIPPED)


def _make_folders(unit: Unit) -> None:
    for folder in (unit.state_dir, unit.output.parent):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise os_error(exc, str(folder), "the unit's folder") from exc


def _run(cmd: list[str], log: Path, env, on_pid, on_spawn) -> int:
    """Run `cmd` with stdout+stderr into `log`; its exit code (128+N when killed by signal N)."""
    with open(log, "wb") as out:
        out.write(f"$ {shlex.join(cmd)}\n".encode())
        out.flush()
        try:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=child_env(env))
        except OSError as exc:
            out.write(f"error: cannot start {cmd[0]}: {exc}\n".encode())
            return 8 if isinstance(exc, FileNotFoundError) else 1
        try:
            on_pid(proc.pid)
            if on_spawn is not None:
                on_spawn(proc)
            return normalise(proc.wait())
        finally:
            stop(proc)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM (nrconvert unwinds and exits 79), then SIGKILL if it does not go in time."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(_TERMINATE_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def error_message(log: Path, code: int) -> str:
    """The failure's first line: nrconvert's "error: ..." line, else the last line of the log."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 65536))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        lines = []
    for line in reversed(lines):
        if line.startswith("error:"):
            return line[len("error:"):].strip()
    if code > 128:
        return describe(code)
    tail = [ln.strip() for ln in lines if ln.strip() and not ln.startswith(("{", "$ "))]
    return tail[-1] if tail else describe(code)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""
