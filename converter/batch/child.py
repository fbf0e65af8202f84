"""`python -m nrconvert.batch.child ARGS...`: `nrconvert ARGS...` that dies with its runner.

A batch runs each unit as a child of a runner: a Ray worker, or the local `nrconvert batch`
process. When the runner is killed (SIGKILL, the OOM killer, Ray replacing a dead worker), an
orphaned conversion would keep writing the very work folder that the retry resumes from, and the
two would race. On Linux the kernel sends the child SIGTERM when its parent dies
(prctl PR_SET_PDEATHSIG); nrconvert handles SIGTERM like a farm's stop: it unwinds, removes its
temp files and exits 79. Elsewhere the child simply outlives its runner.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys

from ..errors import InterruptedRun
from .execute import PARENT_ENV

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Ask for SIGTERM when the parent goes; exit at once if it is already gone."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        return  # not fatal: the conversion still runs, only without the safety net
    if parent_pid and os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(InterruptedRun.exit_code)


def main() -> None:
    die_with_parent(int(os.environ.get(PARENT_ENV, "0") or 0))
    from ..cli import main as cli_main

    cli_main(sys.argv[1:])


if __name__ == "__main__":
    main()
