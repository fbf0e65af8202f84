"""Which failures are retried, and what one exit code says about a whole batch.

Retry policy: a unit is retried (with `--resume`) when its exit code is retryable
(`errors.RETRYABLE_EXIT_CODES`: 75 disk full, 76 out of memory, 77 UV atlas stalled, 79 interrupted,
137/143 killed) or when the machine running it died; permanent codes (2-11, and 1 for a crash) fail at once,
since the same input fails the same way again.

Batch exit code: 0 when every unit is done or already done; otherwise the code of the "worst"
failed unit: permanent failures beat retryable ones (a farm must not resubmit a batch that would
fail again), and among equals the first unit in jobs.toml order wins. A unit that died by a
signal or lost its worker reports 79 (interrupted, retryable); any other death by a signal
reports 1.
"""
from __future__ import annotations

import signal

from ..errors import RETRYABLE_EXIT_CODES, InterruptedRun

LOST = InterruptedRun.exit_code  # the unit's worker or node died under it, retries used up
CRASH = 1  # unhandled exception or a fatal signal: a bug, retrying would crash again


def normalise(returncode: int) -> int:
    """subprocess's -N (killed by signal N) → the shell's 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def is_retryable(exit_code: int) -> bool:
    return exit_code in RETRYABLE_EXIT_CODES


def describe(exit_code: int) -> str:
    """Short words for codes without a message of their own (signals)."""
    if exit_code > 128:
        try:
            return f"killed by {signal.Signals(exit_code - 128).name}"
        except ValueError:
            return f"killed by signal {exit_code - 128}"
    return f"exit code {exit_code}"


def batch_exit_code(failed_codes: list[int]) -> int:
    """The batch's exit code from its failed units' codes, in jobs.toml order (empty: 0)."""
    if not failed_codes:
        return 0
    permanent = [c for c in failed_codes if not is_retryable(c)]
    code = (permanent or failed_codes)[0]
    if code > 128:
        return LOST if is_retryable(code) else CRASH
    return code
