"""Run units on this machine: one at a time (default) or N in parallel, retrying retryable failures.

Threads only wait on subprocesses, so N threads cost nothing; each of the N parallel units gets
an equal share of the cores as its thread count (at least the unit's `num_cpus`). Ctrl-C or
SIGTERM stops everything: running units are sent SIGTERM (they keep their finished stages) and
nothing is retried or started after that.
"""
from __future__ import annotations

import os
import subprocess
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Callable

from .execute import FAILED, UnitResult, run_attempt, stop
from .policy import is_retryable
from .units import Unit

Event = Callable[[str, Unit, UnitResult], None]  # ("retry" | "result", unit, result)


class LocalRunner:
    def __init__(self, jobs: int = 1, on_event: Event | None = None):
        self.jobs = jobs
        self.on_event = on_event or (lambda kind, unit, result: None)
        self.stopping = threading.Event()
        self._procs: set[subprocess.Popen] = set()
        self._lock = threading.Lock()

    def run(self, units: list[Unit], batch_run: str) -> list[UnitResult]:
        """Results in completion order; on an interrupt, KeyboardInterrupt after stopping the units."""
        results: list[UnitResult] = []
        pool = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="unit")
        pending = {pool.submit(self._unit, unit, batch_run): unit for unit in units}
        try:
            while pending:
                finished, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in finished:
                    unit = pending.pop(future)
                    results.append(future.result())
                    self.on_event("result", unit, results[-1])
        except KeyboardInterrupt:
            self.stopping.set()
            with self._lock:
                for proc in list(self._procs):
                    stop(proc)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return results

    def _unit(self, unit: Unit, batch_run: str) -> UnitResult:
        threads = max(int(unit.resources.num_cpus), (os.cpu_count() or 1) // self.jobs, 1)
        env = {"OMP_NUM_THREADS": str(threads)}
        result = run_attempt(unit, batch_run, env, self._track)
        for _ in range(unit.retries):
            if result.status != FAILED or not is_retryable(result.exit_code) or self.stopping.is_set():
                break
            self.on_event("retry", unit, result)
            result = run_attempt(unit, batch_run, env, self._track)
        return result

    def _track(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs = {p for p in self._procs if p.poll() is None}
            self._procs.add(proc)
            if self.stopping.is_set():
                stop(proc)
