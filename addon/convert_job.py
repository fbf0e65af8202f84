"""The `nrconvert` process behind Convert (convert.py): command line, JSON progress, cancel.

Why a subprocess: the converter needs torch (and often CUDA), which never load inside Blender; the
CLI's `--progress json` lines (converter/progress.py: JsonReporter, one object per line with
"stage", "event", "done", "total", and a final {"event": "done", "glb": ...}) are the contract.
No bpy here: `ConvertJob` owns the process (reader threads, so a timer tick never blocks) and
`ConvertProgress` turns the JSON lines into a 0..1 fraction and a stage name.

Cancelling terminates the converter's process group; the converter leaves its work folder
(OUTPUT.work/) in place, so a later run with `--resume` reuses the finished stages.
"""
from __future__ import annotations

import json
import os
import queue
import shlex
import shutil
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any, Callable

# (stage, label, share of the whole run): shares from a tiny-preset CPU run's timings
STAGES = (("train", "Training field", 0.45), ("extract", "Extracting mesh", 0.04),
          ("bake", "Baking textures", 0.36), ("neural", "Neural material", 0.1),
          ("metrics", "Measuring", 0.02), ("export", "Writing GLB", 0.03))
EXIT_CODES = {1: "error", 2: "usage error", 3: "capture error", 4: "training failed",
              5: "no surface extracted", 6: "output error", 7: "GLB failed validation",
              8: "missing dependency", 9: "asset error", 130: "interrupted"}
PRESETS = (("tiny", "Tiny", "Seconds to minutes; for tests and previews"),
           ("fast", "Fast", "A few minutes on a GPU"),
           ("balanced", "Balanced", "The default"),
           ("quality", "Quality", "Slowest, most detail"))


def find_executable(setting: str = "") -> str | None:
    """The nrconvert executable: the preference (a path, or a name looked up on PATH), else
    `nrconvert` on PATH; None when neither exists."""
    if setting:
        path = os.path.abspath(os.path.expanduser(setting))
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
        return shutil.which(setting)
    return shutil.which("nrconvert")


def build_command(exe: str, capture: str, output: str, preset: str, resume: bool = False,
                  extra: str = "") -> list[str]:
    """The command line the add-on runs (extra: more CLI options, shell-quoted)."""
    cmd = [exe, str(capture), "-o", str(output), "--preset", preset, "--progress", "json"]
    return cmd + (["--resume"] if resume else []) + shlex.split(extra)


class ConvertProgress:
    """Folds JsonReporter lines into an overall fraction, a stage label and a detail text."""

    def __init__(self) -> None:
        self.stage, self.label, self.detail = "", "Starting", ""
        self.fraction, self.stage_fraction = 0.0, 0.0
        self.done: dict | None = None  # the final {"event": "done", ...} line
        self.seen: list[str] = []

    def feed(self, line: str) -> bool:
        """Take one stdout line; False for lines that are not progress JSON (ignored)."""
        try:
            obj = json.loads(line)
        except ValueError:
            return False
        if not isinstance(obj, dict) or "event" not in obj:
            return False
        if obj["event"] == "done":
            self.done, self.fraction, self.label = obj, 1.0, "Done"
            return True
        stage = str(obj.get("stage", ""))
        if stage != self.stage:
            self.stage, self.stage_fraction = stage, 0.0
            self.label = dict((s, lbl) for s, lbl, _ in STAGES).get(stage, stage.capitalize())
            self.seen.append(stage)
        done, total = obj.get("done"), obj.get("total")
        if obj["event"] == "end":
            self.stage_fraction = 1.0
        elif isinstance(done, (int, float)) and isinstance(total, (int, float)) and total > 0:
            self.stage_fraction = min(max(done / total, 0.0), 1.0)
        self.detail = _detail(obj)
        self.fraction = max(self.fraction, self._overall())
        return True

    def _overall(self) -> float:
        names = [s for s, _, _ in STAGES]
        if self.stage not in names:
            return self.fraction
        k = names.index(self.stage)
        before = sum(w for _, _, w in STAGES[:k])
        return min(before + STAGES[k][2] * self.stage_fraction, 0.999)


def _detail(obj: dict) -> str:
    if "train_psnr" in obj:
        return f"train PSNR {obj['train_psnr']:.1f} dB"
    if isinstance(obj.get("step"), str):
        return obj["step"]
    return ""


class ConvertJob:
    """One nrconvert process: stdout lines feed a ConvertProgress, stderr is kept for errors."""

    def __init__(self, command: list[str], output: str) -> None:
        self.command, self.output = command, Path(output)
        self.workdir = self.output.with_suffix(".work")
        self.progress = ConvertProgress()
        self.process: subprocess.Popen | None = None
        self.stderr: list[str] = []
        self._lines: queue.Queue = queue.Queue()
        self._threads: list[threading.Thread] = []
        self.cancelled = False

    def start(self) -> None:
        """Launch the process (raises OSError when it cannot start)."""
        env = dict(os.environ, COLUMNS="400", NO_COLOR="1", PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            text=True, bufsize=1, env=env, start_new_session=os.name == "posix")
        for stream, sink in ((self.process.stdout, self._lines.put), (self.process.stderr, self.stderr.append)):
            t = threading.Thread(target=_pump, args=(stream, sink), daemon=True)
            t.start()
            self._threads.append(t)

    def poll(self) -> int | None:
        """Feed the lines read so far; the exit code once the process ended and its pipes
        drained, else None."""
        self._drain()
        if self.process is None or self.process.poll() is None:
            return None
        for t in self._threads:
            t.join(timeout=2.0)
        self._drain()
        return self.process.returncode

    def _drain(self) -> None:
        while True:
            try:
                self.progress.feed(self._lines.get_nowait())
            except queue.Empty:
                return

    def cancel(self, grace: float = 5.0) -> int | None:
        """Terminate the process (its whole group: the converter may start helpers)."""
        self.cancelled = True
        proc = self.process
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc else None
        _signal(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal(proc, signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)
            proc.wait(timeout=grace)
        self.poll()
        return proc.returncode

    def error_text(self) -> str:
        """The converter's own error message (from 'error:' on), else the end of stderr."""
        lines = [ln.rstrip() for ln in self.stderr if ln.strip()]
        for i, ln in enumerate(lines):
            if ln.lstrip().startswith("error:"):
                return "; ".join(x.strip() for x in lines[i:i + 3])[len("error:"):].strip()
        return " ".join(x.strip() for x in lines[-3:]) or "no error message"


def _pump(stream: Any, sink: Callable[[str], None]) -> None:
    for line in iter(stream.readline, ""):
        sink(line.rstrip("\n"))
    stream.close()


def _signal(proc: subprocess.Popen, sig: int) -> None:
    try:
        if os.name == "posix":
            os.killpg(proc.pid, sig)  # the group we created with start_new_session
        else:
            proc.terminate()
    except ProcessLookupError:
        pass
