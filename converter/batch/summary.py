"""What the batch prints: one line per finished unit on stderr, one table at the end on stdout."""
from __future__ import annotations

import shlex
import sys

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .execute import DONE, FAILED, SKIPPED, UnitResult
from .policy import batch_exit_code, describe
from .units import Unit

STYLE = {DONE: "green", SKIPPED: "cyan", FAILED: "bold red"}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def progress_line(result: UnitResult, finished: int, total: int) -> str:
    head = f"[{finished}/{total}] {result.unit_id}: {result.status}"
    if result.status == SKIPPED:
        return head + " (already done)"
    tries = f"attempt {result.attempts}" if result.attempts else ""
    if result.status == DONE:
        return f"{head} in {result.seconds:.0f} s" + (f" ({tries})" if result.attempts > 1 else "")
    return f"{head} with {describe(result.exit_code)} after {tries}: {result.message}"


def retry_line(unit: Unit, result: UnitResult) -> str:
    return (f"retrying {unit.id} with --resume: attempt {result.attempts} failed with "
            f"{describe(result.exit_code)}: {result.message}")


def summary_table(results: list[UnitResult]) -> Table:
    table = Table(title="nrconvert batch")
    for name, justify in (("unit", "left"), ("status", "left"), ("attempts", "right"),
                          ("exit", "right"), ("time", "right"), ("message", "left")):
        table.add_column(name, justify=justify)
    for r in sorted(results, key=lambda r: r.order):
        status = r.status + (" (already done)" if r.status == SKIPPED else "")
        table.add_row(escape(r.unit_id), f"[{STYLE[r.status]}]{status}[/]", str(r.attempts or "-"),
                      str(r.exit_code) if r.status == FAILED else "-",
                      f"{r.seconds:.0f} s" if r.status != SKIPPED else "-", escape(r.message or r.log))
    return table


def totals(results: list[UnitResult]) -> tuple[str, int]:
    """('4 units: 3 done, 1 skipped (already done), 0 failed; exit 0', exit code)."""
    count = {s: sum(r.status == s for r in results) for s in (DONE, SKIPPED, FAILED)}
    failed = [r.exit_code for r in sorted(results, key=lambda r: r.order) if r.status == FAILED]
    code = batch_exit_code(failed)
    return (f"{len(results)} units: {count[DONE]} done, {count[SKIPPED]} skipped (already done), "
            f"{count[FAILED]} failed; exit {code}", code)


def print_summary(results: list[UnitResult]) -> int:
    """The table and the totals line on stdout; returns the batch's exit code."""
    console = Console(width=max(Console().width, 120))
    console.print(summary_table(results))
    line, code = totals(results)
    console.print(line, highlight=False)
    return code


def plan_lines(plan: list[tuple[Unit, str]]) -> list[str]:
    """--dry-run: per unit, what it would do and its resources, then its command line (copy-pastable)."""
    lines = []
    for unit, would in plan:
        lines.append(f"{unit.id}: {would} ({unit.resources.num_cpus:g} CPU, {unit.resources.num_gpus:g} GPU, "
                     f"{unit.retries} retries)")
        lines.append(f"  {shlex.join(unit.argv)}")
    return lines
