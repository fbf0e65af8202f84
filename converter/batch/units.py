"""The unit of scheduling: one command line, the file it makes, where its state lives, what it needs.

Runners (local, Ray) see nothing but `Unit`s, so what a unit *is* can grow without touching them:
today a unit converts one whole capture (`nrconvert CAPTURE -o OUT.glb ...`); a block of a large
capture is the same record with another command line (`nrconvert train CAPTURE --block 3`), its
own output file and `kind` (which picks the output check).
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

from .jobs import BatchSpec, Job

NRCONVERT = "nrconvert"  # argv[0] of units that run nrconvert itself (see execute.command_line)


@dataclass(frozen=True)
class Resources:
    """What the unit needs from the machine that runs it (Ray reserves exactly this)."""

    num_cpus: float = 1
    num_gpus: float = 0


@dataclass
class Unit:
    id: str
    argv: list[str]  # the full command line, argv[0] included; without --resume (added on retries)
    output: Path  # the file the unit produces; done.json is only written once it checks out
    state_dir: Path  # done.json, attempts.json, attempt-N.log
    inputs: list[Path]  # files or folders whose sizes and mtimes go into the fingerprint
    settings: dict = field(default_factory=dict)  # everything else that decides the output
    resources: Resources = field(default_factory=Resources)
    retries: int = 2  # further attempts after a retryable failure or a lost worker
    kind: str = "convert"  # which check_output applies
    order: int = 0  # position in the jobs file: the summary and the exit code follow it
    # Stage outputs that `--resume` reuses. They belong to one fingerprint: a fresh start (new
    # inputs or settings) empties the folder first, or a later retry with --resume could pick up
    # stages of the old inputs that the killed fresh attempt had not overwritten yet.
    workdir: Path | None = None

    @property
    def done_file(self) -> Path:
        return self.state_dir / "done.json"

    @property
    def attempts_file(self) -> Path:
        return self.state_dir / "attempts.json"

    def log_file(self, seq: int) -> Path:
        """The log of the unit's seq-th attempt, counted over all batch runs."""
        return self.state_dir / f"attempt-{seq}.log"


def units_from_jobs(spec: BatchSpec) -> list[Unit]:
    return [convert_unit(job) for job in spec.jobs]


def convert_unit(job: Job) -> Unit:
    """A whole capture → one GLB, with JSON progress lines in the unit's log."""
    workdir = job.output.with_suffix(".work")
    argv = [NRCONVERT, str(job.capture), "-o", str(job.output), "--workdir", str(workdir), "--preset", job.preset]
    for key, value in sorted(job.settings.items()):
        argv += ["--set", f"{key}={value}"]
    argv += ["--progress", "json"]
    folder = job.capture if job.capture.is_dir() else job.capture.parent  # images sit beside transforms.json
    settings = {"preset": job.preset, "set": dict(sorted(job.settings.items()))}
    return Unit(id=job.id, argv=argv, output=job.output, state_dir=job.output.with_suffix(".batch"),
                inputs=[folder], settings=settings,
                resources=Resources(job.num_cpus, job.num_gpus), retries=job.retries, kind="convert",
                order=job.index, workdir=workdir)


def check_output(unit: Unit) -> str | None:
    """What is wrong with the unit's output, or None. Runs after exit 0, before done.json."""
    path = unit.output
    if not path.is_file() or path.stat().st_size == 0:
        return f"{path}: the command exited 0 but wrote no output"
    if unit.kind == "convert":
        return check_glb(path)
    return None


def check_glb(path: Path) -> str | None:
    """Structural check of a GLB: header, declared length = file size, a JSON chunk that parses.

    nrconvert already ran the Khronos validator before renaming the file into place; this catches
    what can happen after that (truncation by a full disk on a network file system, a stray write).
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(20)
        if len(head) < 20:
            return f"{path}: truncated GLB ({size} bytes)"
        magic, version, length, chunk_len, chunk_type = struct.unpack("<4sIIII", head)
        if magic != b"glTF" or version != 2:
            return f"{path}: not a glTF 2.0 binary"
        if length != size:
            return f"{path}: GLB header says {length} bytes, the file has {size}"
        if chunk_type != 0x4E4F534A or chunk_len > size - 20:
            return f"{path}: the GLB's first chunk is not JSON"
        try:
            json.loads(f.read(chunk_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return f"{path}: the GLB's JSON chunk does not parse: {exc}"
    return None

