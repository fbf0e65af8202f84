"""`render_capture`: a NeRF-synthetic style capture of a procedural object, rendered by Blender.

The cameras and JSON files are made here in plain numpy; the Blender subprocess only builds the
scene and renders the views it is given. Everything lands in a hidden temporary folder next to
`out_dir` that is renamed into place at the end, so a killed run never leaves half a capture.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from nrconvert.errors import OutputError
from nrconvert.synth._runner import Progress, run_blender_job
from nrconvert.synth.plan import CapturePlan, object_plan
from nrconvert.synth.presets import (
    DEFAULT_HDRI, DEFAULT_RELIGHT_HDRI, check_background, check_hdri, check_object, get_preset,
)
from nrconvert.synth.street import STREET, street_plan

SPLITS = ("train", "test", "test_relight")


def world_spec(hdri: str) -> dict[str, Any]:
    """The world block recorded in the capture and used again by `render_glb`."""
    return {"hdri": hdri, "strength": 1.0, "rotation_z": 0.0}


def _plan(object: str, preset: str, seed: int) -> CapturePlan:
    """The street scene has its own layout and presets; every other object sits alone at the origin."""
    return street_plan(preset, seed) if object == STREET else object_plan(object, preset, seed)


def _frame_name(split: str, i: int) -> str:
    return f"{split}/r_{i:03d}.png"


def _mask_name(split: str, i: int) -> str:
    """Relit test views share the test views' masks: same cameras, same object."""
    return f"masks/{'test' if split == 'test_relight' else split}/r_{i:03d}.png"


def _passes(root: Path, poses: dict[str, list[np.ndarray]], opaque: bool) -> list[dict[str, Any]]:
    """Image passes for train/test/test_relight, then coverage-mask passes when the film is opaque."""
    split_poses = {"train": poses["train"], "test": poses["test"], "test_relight": poses["test"]}
    passes = []
    for split, ps in split_poses.items():
        views = [{"matrix": m.tolist(), "path": str(root / _frame_name(split, i))} for i, m in enumerate(ps)]
        passes.append({"mode": "image", "world": "relight_world" if split == "test_relight" else "world",
                       "views": views})
    if opaque:
        for split in ("train", "test"):
            views = [{"matrix": m.tolist(), "path": str(root / _mask_name(split, i))}
                     for i, m in enumerate(poses[split])]
            passes.append({"mode": "mask", "world": None, "views": views})
    return passes


def _transforms(split: str, poses: list[np.ndarray], plan: CapturePlan, block: dict[str, Any],
                opaque: bool) -> dict[str, Any]:
    frames = []
    for i, m in enumerate(poses):
        frame: dict[str, Any] = {"file_path": _frame_name(split, i), "transform_matrix": m.tolist()}
        if opaque:
            frame["nrconvert_eval_mask"] = _mask_name(split, i)
        frames.append(frame)
    split_world = "relight_world" if split == "test_relight" else "world"
    return {
        **plan.intrinsics(),
        "nrconvert": {**block, "split_world": split_world},
        "frames": frames,
    }


def _is_replaceable(out_dir: Path) -> bool:
    """An absent or empty folder, or an earlier synth capture: anything else is the user's data."""
    if not out_dir.exists():
        return True
    if not out_dir.is_dir():
        return False
    if not any(out_dir.iterdir()):
        return True
    try:
        data = json.loads((out_dir / "transforms_train.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "nrconvert" in data and "gt_mesh" in data["nrconvert"]


def _check_replaceable(out_dir: Path) -> None:
    if not _is_replaceable(out_dir):
        raise OutputError("exists and is not an nrconvert synth capture; refusing to overwrite it",
                          path=str(out_dir), hint="choose an empty or new folder")


def _move_into_place(tmp: Path, out_dir: Path) -> None:
    """Swap the finished capture in; an earlier capture is moved aside first, then deleted."""
    _check_replaceable(out_dir)
    old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
    if out_dir.exists():
        out_dir.rename(old)
    tmp.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)


def render_capture(out_dir: Path, *, object: str = "suzanne", preset: str = "tiny", seed: int = 0,
                   background: str = "transparent", hdri: str = DEFAULT_HDRI,
                   relight_hdri: str = DEFAULT_RELIGHT_HDRI, progress: Progress | None = None) -> Path:
    """Render a synthetic capture of a procedural object into `out_dir` and return `out_dir`.

    Writes `transforms_{train,test,test_relight}.json`, the PNGs they list, `gt_mesh.ply` (the
    object in world coordinates) and, for an opaque background, coverage masks under `masks/`.
    `object="street"` renders a row of objects from cameras driving past it (`synth.street`).
    """
    get_preset(preset)
    check_object(object)
    check_background(background)
    hdri, relight_hdri = check_hdri(hdri), check_hdri(relight_hdri)
    out_dir = Path(out_dir).expanduser().resolve()
    _check_replaceable(out_dir)
    opaque = background == "opaque"
    plan = _plan(object, preset, seed)
    poses = plan.poses
    block = {"gt_mesh": "gt_mesh.ply", "object": object, "preset": preset, "seed": seed,
             "background": background, "world": world_spec(hdri), "relight_world": world_spec(relight_hdri),
             "samples": plan.samples, "denoise": plan.denoise, **plan.meta}
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the parent folder: {exc}", path=str(out_dir.parent)) from exc
    tmp = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        run_blender_job({
            "scene": plan.scene,
            "render": {"w": plan.width, "h": plan.height, "camera_angle_x": plan.camera_angle_x,
                       "samples": plan.samples, "denoise": plan.denoise, "seed": seed, "background": background},
            "worlds": {"world": block["world"], "relight_world": block["relight_world"]},
            "passes": _passes(tmp, poses, opaque),
            "gt_mesh": str(tmp / "gt_mesh.ply"),
        }, progress)
        for split in SPLITS:
            data = _transforms(split, poses["test" if split == "test_relight" else split], plan, block, opaque)
            (tmp / f"transforms_{split}.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
        _move_into_place(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
