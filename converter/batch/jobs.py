"""jobs.toml → a validated list of `Job`s, before any work starts.

A typo in job 97 must not surface after 96 conversions, so everything that can be checked without
running is checked here: keys, types, presets, `set` overrides (against the real `Config`),
capture paths, duplicate outputs. Every error names `jobs.toml:LINE` and the key at fault.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..config import make_config
from ..errors import CaptureError, UsageError

JOB_KEYS = {"id", "capture", "output", "preset", "set", "num_cpus", "num_gpus", "retries"}
DEFAULT_KEYS = JOB_KEYS - {"id", "capture", "output"}
BUILTIN_DEFAULTS = {"preset": "balanced", "set": {}, "num_cpus": 1, "num_gpus": 0, "retries": 2}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class Job:
    """One capture to convert, with every default already applied and paths absolute."""

    index: int  # 1-based position in jobs.toml
    line: int | None  # line of its [[jobs]] header (None for an inline array)
    id: str
    capture: Path
    output: Path
    preset: str
    settings: dict[str, str] = field(default_factory=dict)  # --set overrides, as CLI strings
    num_cpus: float = 1
    num_gpus: float = 0
    retries: int = 2


@dataclass
class BatchSpec:
    path: Path
    jobs: list[Job]


class _Where:
    """Line numbers for error messages: tomllib returns plain dicts without positions."""

    def __init__(self, path: Path, text: str):
        self.path = path
        self.lines = text.splitlines()
        self.headers = [i + 1 for i, line in enumerate(self.lines) if re.match(r"\s*\[\[\s*jobs\s*\]\]", line)]
        self.defaults = next((i + 1 for i, line in enumerate(self.lines)
                              if re.match(r"\s*\[\s*defaults\s*\]", line)), None)

    def job(self, index: int) -> int | None:
        return self.headers[index - 1] if index <= len(self.headers) else None

    def key(self, start: int | None, key: str) -> int | None:
        """The line of `key = ...` in the section that starts at line `start`."""
        if start is None:
            return None
        later = [h for h in self.headers + [self.defaults or 0] if h > start]
        end = min(later) if later else len(self.lines) + 1
        quoted = rf"[\"']?{re.escape(key)}[\"']?\s*="
        at_start = re.compile(rf"\s*{quoted}").match
        inline = re.compile(rf"[\s{{,.]{quoted}").search  # set = { steps = 5 } or set.steps = 5
        for found in (at_start, inline):
            for number in range(start, end):
                if found(self.lines[number - 1]):
                    return number
        return start

    def at(self, line: int | None) -> str:
        return f"{self.path}:{line}" if line else str(self.path)


def load_jobs(path: Path) -> BatchSpec:
    """Read and check `path`; UsageError (exit 2) or CaptureError (exit 3) naming file:line."""
    path = Path(path).resolve()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError("jobs file not found", path=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the jobs file: {exc}", path=str(path)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"not valid TOML: {exc}", path=str(path)) from None
    where = _Where(path, text)
    _unknown_keys(data, {"defaults", "jobs"}, where, None, "top level")
    defaults = _defaults(data.get("defaults", {}), where)
    entries = data.get("jobs")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise UsageError("no jobs: add one [[jobs]] table per capture (capture = ..., output = ...)",
                         path=str(path), hint="see docs/batch.md for the format")
    jobs = [_job(i, entry, defaults, where) for i, entry in enumerate(entries, start=1)]
    _unique(jobs, where)
    return BatchSpec(path, jobs)


def _defaults(raw, where: _Where) -> dict:
    if not isinstance(raw, dict):
        raise UsageError("[defaults] must be a table", path=where.at(where.defaults))
    _unknown_keys(raw, DEFAULT_KEYS, where, where.defaults, "[defaults]")
    merged = dict(BUILTIN_DEFAULTS)
    merged.update({k: v for k, v in raw.items() if k != "set"})
    merged["set"] = _settings(raw.get("set", {}), where, where.key(where.defaults, "set"), "[defaults]")
    return merged


def _job(index: int, entry: dict, defaults: dict, where: _Where) -> Job:
    start = where.job(index)
    name = f"job {index}"
    _unknown_keys(entry, JOB_KEYS, where, start, name)
    for key in ("capture", "output"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise UsageError(f"{name}: '{key}' is missing (a path, relative to the jobs file)",
                             path=where.at(start))
    base = where.path.parent
    capture = (base / entry["capture"]).resolve()
    output = (base / entry["output"]).resolve()
    if not capture.exists():
        raise CaptureError(f"{name}: capture {capture} does not exist", path=where.at(where.key(start, "capture")),
                           hint="paths are relative to the jobs file's folder")
    if output.suffix.lower() != ".glb":
        raise UsageError(f"{name}: 'output' must be a .glb file, got {entry['output']!r}",
                         path=where.at(where.key(start, "output")))
    folder = capture if capture.is_dir() else capture.parent
    if output.is_relative_to(folder):
        raise UsageError(f"{name}: the output {output} is inside the capture folder; every run would "
                         "change the capture's fingerprint", path=where.at(where.key(start, "output")),
                         hint="write outputs next to the captures, not into them")
    settings = dict(defaults["set"])
    settings.update(_settings(entry.get("set", {}), where, where.key(start, "set"), name))
    values = {k: entry.get(k, defaults[k]) for k in ("preset", "num_cpus", "num_gpus", "retries")}
    own = set(entry) | set(entry.get("set", {}))  # keys of this job; the rest came from [defaults]
    _check_values(values, settings, name, lambda key: where.at(
        where.key(start, key) if key in own or where.defaults is None else where.key(where.defaults, key)))
    unit_id = entry.get("id", output.stem)
    if not isinstance(unit_id, str) or not _ID.match(unit_id):
        raise UsageError(f"{name}: 'id' must be letters, digits, '.', '_' or '-', got {unit_id!r}",
                         path=where.at(where.key(start, "id")))
    return Job(index, start, unit_id, capture, output, values["preset"], settings,
               values["num_cpus"], values["num_gpus"], values["retries"])


def _check_values(values: dict, settings: dict, name: str, at) -> None:
    if not isinstance(values["preset"], str):
        raise UsageError(f"{name}: 'preset' must be a string", path=at("preset"))
    for key, low in (("num_cpus", 0.0), ("num_gpus", -1.0)):
        value = values[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= low:
            need = "> 0" if key == "num_cpus" else ">= 0"
            raise UsageError(f"{name}: '{key}' must be a number {need}, got {value!r}", path=at(key))
    retries = values["retries"]
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise UsageError(f"{name}: 'retries' must be a whole number >= 0, got {retries!r}", path=at("retries"))
    try:
        make_config(values["preset"])
    except KeyError as exc:
        raise UsageError(f"{name}: {exc.args[0]}", path=at("preset")) from None
    for key, value in settings.items():  # one at a time, to name the key at fault
        try:
            make_config(values["preset"], {key: value})
        except KeyError as exc:
            raise UsageError(f"{name}: set: {exc.args[0]}", path=at(key)) from None
        except ValueError as exc:
            raise UsageError(f"{name}: set: {key} = {value!r}: {exc}", path=at(key)) from None


def _settings(raw, where: _Where, line: int | None, name: str) -> dict[str, str]:
    """`set = {steps = 50, neural = false}` → {"steps": "50", "neural": "false"} (CLI strings)."""
    if not isinstance(raw, dict):
        raise UsageError(f"{name}: 'set' must be a table, e.g. set = {{ steps = 500 }}", path=where.at(line))
    out = {}
    for key, value in raw.items():
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, (int, float, str)):
            out[key] = str(value)
        else:
            raise UsageError(f"{name}: set.{key} must be a number, string or boolean, got {value!r}",
                             path=where.at(where.key(line, key)))
    return out


def _unknown_keys(raw: dict, allowed: set[str], where: _Where, line: int | None, name: str) -> None:
    for key in raw:
        if key not in allowed:
            raise UsageError(f"{name}: unknown key {key!r}; allowed: {', '.join(sorted(allowed))}",
                             path=where.at(where.key(line, key) if line else None))


def _unique(jobs: list[Job], where: _Where) -> None:
    for attr in ("output", "id"):
        seen: dict = {}
        for job in jobs:
            value = getattr(job, attr)
            if value in seen:
                hint = "give each job its own 'id'" if attr == "id" else None
                raise UsageError(f"job {job.index} has the same {attr} as job {seen[value].index} "
                                 f"(line {seen[value].line}): {value}", path=where.at(job.line), hint=hint)
            seen[value] = job
