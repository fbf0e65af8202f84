"""`nrconvert batch jobs.toml [--ray auto|ADDRESS] [--jobs N] [--dry-run]` (registered in cli.py)."""
from __future__ import annotations

import itertools
import time
import uuid
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from ..errors import InterruptedRun, UsageError
from .execute import SKIPPED, UnitResult
from .jobs import load_jobs
from .state import fingerprint, is_done, read_done
from .summary import plan_lines, print_summary, progress_line, retry_line, say, summary_table
from .units import Unit, units_from_jobs


def batch(
    jobs_file: Path = typer.Argument(..., help="jobs.toml: one [[jobs]] table per capture (docs/batch.md)."),
    ray: Optional[str] = typer.Option(None, "--ray", metavar="auto|ADDRESS",
                                      help="Run every unit as a Ray task on this cluster (auto: the cluster "
                                      "this machine belongs to)."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="Units at once on this machine (default 1)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check the jobs file, list what would run, run nothing."),
) -> None:
    """Convert many captures; units already done (done.json, same inputs) are skipped."""
    if jobs is not None and jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {jobs}")
    if ray is not None and jobs is not None:
        raise UsageError("--jobs is for runs on this machine; with --ray the cluster's free CPUs and GPUs "
                         "decide how many units run at once (num_cpus / num_gpus in the jobs file)")
    if ray is not None and not ray.strip():
        raise UsageError("--ray needs an address (HOST:PORT) or auto")
    units = units_from_jobs(load_jobs(jobs_file))
    plan = [(unit, why_run(unit)) for unit in units]
    if dry_run:
        print("\n".join(plan_lines(plan)))
        return
    todo = [unit for unit, why in plan if why != "skip: done"]
    results = [UnitResult(u.id, u.order, SKIPPED) for u, why in plan if why == "skip: done"]
    where = f"on the Ray cluster at {ray}" if ray else f"on this machine, {jobs or 1} at a time"
    say(f"{len(units)} units: {len(results)} already done, {len(todo)} to run {where}")
    for n, result in enumerate(results, start=1):
        say(progress_line(result, n, len(units)))
    finished = itertools.count(len(results) + 1)

    def on_result(unit: Unit, result: UnitResult) -> None:
        results.append(result)
        say(progress_line(result, next(finished), len(units)))

    try:
        _run(todo, ray, jobs or 1, on_result)
    except KeyboardInterrupt:
        if results:
            Console(width=max(Console().width, 120)).print(summary_table(results))
        raise InterruptedRun(f"the batch was stopped with {len(units) - len(results)} of {len(units)} units "
                             "unfinished; finished units have their done.json",
                             hint="re-run the same command: done units are skipped, the others resume") from None
    code = print_summary(results)
    if code:
        raise SystemExit(code)  # click returns typer.Exit's code in cli.main's non-standalone mode


def why_run(unit: Unit) -> str:
    """'skip: done', or why the unit runs (for --dry-run and the start line)."""
    digest, _ = fingerprint(unit)
    if is_done(unit, digest):
        return "skip: done"
    done = read_done(unit)
    if done is None:
        return "run"
    if done.get("fingerprint") != digest:
        return "run again: inputs, settings or version changed"
    return "run again: the output is missing or changed"


def _run(units: list[Unit], ray: str | None, jobs: int, on_result) -> list[UnitResult]:
    if not units:
        return []
    batch_run = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    if ray:
        from .ray_runner import run_on_ray

        return run_on_ray(units, ray.strip(), batch_run, on_result)
    from .local import LocalRunner

    def on_event(kind: str, unit: Unit, result: UnitResult) -> None:
        if kind == "retry":
            say(retry_line(unit, result))
        else:
            on_result(unit, result)

    return LocalRunner(jobs, on_event).run(units, batch_run)
