"""The settings a work folder's stage outputs were made with, so --resume never mixes two runs.

Why: --resume (and every farm unit, which always resumes) loads whatever the work folder holds. A
run resumed with another preset or `--set` used to pick up a field trained with the old settings
and bake it with the new ones, silently. Each setting belongs to the first stage it changes (the
field order of config.Config: training, extraction, baking, neural); when a stored setting
differs, that stage's outputs and all after it are deleted, so they are made again, and the
folder records the new settings. Deleting (rather than only redoing) keeps a later resume right
even if the redo itself is killed half-way.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from .checkpoint import write_json
from .config import Config
from .pipeline import STAGES, Run

log = logging.getLogger("nrconvert")

RECORD = "settings.json"
# the first setting of each stage's group in config.Config; those before 'steps' (preset, seed,
# device, threads) are listed in FIRST_STAGE or change nothing stored
GROUP_STARTS = {"steps": "train", "mc_resolution": "extract", "texture_size": "bake", "neural": "neural"}
FIRST_STAGE = {"seed": "train"}
NO_EFFECT = {"preset", "device", "threads", "checkpoint_every", "checkpoint_every_s"}  # same outputs
OUTPUTS = {"train": ("field.pt", "field.partial.pt"), "extract": ("mesh.npz",), "bake": ("bake/bake.json",),
           "neural": ("neural/neural.json",), "export": ()}


def setting_stages() -> dict[str, str]:
    """Every setting that changes a stored output, and the first stage it changes."""
    out, stage = dict(FIRST_STAGE), None
    for f in dataclasses.fields(Config):
        stage = GROUP_STARTS.get(f.name, stage)
        if stage and f.name not in NO_EFFECT:
            out[f.name] = stage
    return out


def stale_stage(stored: dict, cfg: Config) -> tuple[str | None, dict]:
    """The first stage whose settings differ from `stored`, and the changes {name: (old, new)}."""
    now = dataclasses.asdict(cfg)
    stages = setting_stages()
    changed = {k: (stored[k], now[k]) for k in stages if k in stored and stored[k] != now[k]}
    if not changed:
        return None, {}
    return min((stages[k] for k in changed), key=STAGES.index), changed


def reconcile_settings(run: Run, retrain: bool = True, upto: str | None = None) -> str | None:
    """On resume, drop the outputs made with other settings (the first stale stage and all after
    it) and record the current settings; returns that stage. `retrain=False` (a bake unit, which
    only reads the field) refuses a field trained with other settings instead of deleting it.
    `upto` (a farm's train unit, which has no bake options) compares and records only the
    settings of stages up to that one: the bake settings stay as the bake unit recorded them."""
    from .errors import BlockError

    path = Path(run.workdir) / RECORD
    stage = None
    if run.resume and path.exists():
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            stored = {}  # unreadable record: trust the outputs, as before records existed
        stage, changed = stale_stage(_scoped(stored, run.cfg, upto), run.cfg)
        if stage == "train" and not retrain:
            raise BlockError(f"this block was trained with other settings ({_describe(changed)})", path=str(path),
                             hint="re-run its `nrconvert train --block N` with the new settings first")
        if stage:
            log.warning("settings changed since the stored work (%s): redoing from %s", _describe(changed), stage)
            for later in STAGES[STAGES.index(stage):]:
                for name in OUTPUTS[later]:
                    (Path(run.workdir) / name).unlink(missing_ok=True)
    else:
        stored = {}
    write_json(path, _scoped(dataclasses.asdict(run.cfg), stored, upto))
    return stage


def _scoped(primary, other, upto: str | None) -> dict:
    """`primary`'s settings for the stages up to `upto`, `other`'s (a dict or a Config) for the
    later ones where it has them: so a train unit neither compares nor overwrites bake settings."""
    first = primary if isinstance(primary, dict) else dataclasses.asdict(primary)
    if upto is None:
        return dict(first)
    second = other if isinstance(other, dict) else dataclasses.asdict(other)
    stages = setting_stages()
    late = {k for k, st in stages.items() if STAGES.index(st) > STAGES.index(upto)}
    return {k: (second[k] if k in late and k in second else v) for k, v in first.items()}


def _describe(changed: dict) -> str:
    return ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in sorted(changed.items()))
