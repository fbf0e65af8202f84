"""Run a Blender job in a subprocess and relay its progress.

bpy and torch clash when loaded into one process, and the converter must not depend on bpy, so
every Blender render runs in a child of the same interpreter (`_CHILD`, JOB.json):
`_blender_main` does the job, `exit_bpy_process` ends the child so that bpy 4.2 does not crash
on the way out. This module is pure Python: importing it never loads bpy.
"""
from __future__ import annotations

import atexit
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from nrconvert.errors import DependencyError, NrcError

Progress = Callable[[int, int], None]

EXIT_NO_BPY = 3  # the exit code of _blender_main when `import bpy` fails
_CHILD = "import sys; from nrconvert.synth._runner import child_main; child_main(sys.argv[1:])"
_BPY_HINT = "install Blender as a Python module: pip install 'nrconvert[blender]' (bpy==5.0.1, Python 3.11)"


class BlenderRenderError(NrcError):
    """A Blender subprocess failed; the message carries the tail of its stderr."""

    exit_code = 1


def check_bpy() -> None:
    """Raise DependencyError early when bpy is not installed (without importing it)."""
    if importlib.util.find_spec("bpy") is None:
        raise DependencyError("bpy (Blender as a Python module) is not installed", hint=_BPY_HINT)


def _parse_progress(line: str) -> tuple[int, int] | None:
    if not line.startswith("{"):
        return None
    try:
        msg = json.loads(line)
    except ValueError:
        return None
    if isinstance(msg, dict) and "done" in msg and "total" in msg:
        return int(msg["done"]), int(msg["total"])
    return None


def _tail(text: str, n: int = 3000) -> str:
    return text if len(text) <= n else "..." + text[-n:]


def run_blender_job(job: dict[str, Any], progress: Progress | None = None) -> None:
    """Run `job` in a Blender subprocess, calling `progress(done, total)` per rendered view.

    The child is killed if we are interrupted, so a Ctrl-C never leaves a render running.
    """
    check_bpy()
    with tempfile.TemporaryDirectory(prefix="nrconvert-blender-") as tmp:
        job_path = Path(tmp) / "job.json"
        job_path.write_text(json.dumps(job), encoding="utf-8")
        err_path = Path(tmp) / "stderr.txt"
        stdout_tail: deque[str] = deque(maxlen=30)
        with open(err_path, "w+", encoding="utf-8", errors="replace") as err:
            cmd = [sys.executable, "-c", _CHILD, str(job_path)]
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                                    encoding="utf-8", errors="replace")
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    msg = _parse_progress(line.strip())
                    if msg is None:
                        stdout_tail.append(line.rstrip())
                    elif progress is not None:
                        progress(*msg)
                rc = proc.wait()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            err.seek(0)
            stderr = err.read()
    _raise_for_exit(rc, stderr, list(stdout_tail))


def _raise_for_exit(rc: int, stderr: str, stdout_tail: list[str]) -> None:
    if rc == 0:
        return
    if rc == EXIT_NO_BPY:
        raise DependencyError(f"bpy cannot be imported: {_tail(stderr, 500).strip()}", hint=_BPY_HINT)
    detail = _tail(stderr.strip()) or "\n".join(stdout_tail[-15:])
    raise BlenderRenderError(f"Blender subprocess failed (exit code {rc}):\n{detail}")


# ---------------------------------------------------------------- the child's exit


def bpy_exit_crashes() -> bool:
    """Whether this process runs bpy as a Python module of a version whose interpreter exit
    can crash (seen with bpy 4.2.0, not with 5.0.1; versions between are untested and counted in).

    bpy 4.2 shuts Blender down (WM_exit) only when the `bpy` module object is freed while Python
    finalizes. Anything still holding it then (typing's caches of the glTF add-on's classes after a
    glTF import or export, a class registered from a script, an enabled add-on) keeps Blender
    alive past the interpreter, and its C++ static destructors free Python-defined panel types
    with no interpreter left: SIGSEGV after the work is done. 5.0 shuts down from the module
    cleanup instead. In the `blender` binary (binary_path set) Blender exits by itself."""
    bpy = sys.modules.get("bpy")
    app = getattr(bpy, "app", None)
    return app is not None and not app.binary_path and tuple(app.version) < (5, 0, 0)


def exit_bpy_process(code: int) -> NoReturn:
    """Exit with `code`; where bpy_exit_crashes(), without the interpreter teardown that crashes:
    the atexit handlers run, stdio is flushed, Blender's session temp folder (which its shutdown
    would purge) is removed, then os._exit. Also usable as an atexit callback."""
    if not bpy_exit_crashes():
        sys.exit(code)
    atexit.unregister(exit_bpy_process)  # when it is itself the atexit callback running now
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    temp = sys.modules["bpy"].app.tempdir
    if os.path.basename(os.path.normpath(temp)).startswith("blender_"):
        shutil.rmtree(temp, ignore_errors=True)
    os._exit(int(code))


def child_main(argv: list[str]) -> NoReturn:
    """The Blender subprocess (`_CHILD`): `_blender_main` runs the job, exit_bpy_process ends it."""
    from nrconvert.synth import _blender_main

    sys.stdout.reconfigure(line_buffering=True)
    exit_bpy_process(_blender_main.main(argv))
