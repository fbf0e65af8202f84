"""Work-folder persistence for stage outputs: atomic writes, pickle-free reads."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from . import faults
from .errors import OutputError, os_error
from .fields.occupancy import OccupancyGrid
from .mesh import Mesh
from .render.rays import Box


def atomic_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _commit(tmp: Path, path: Path) -> None:
    try:
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise os_error(exc, str(path), "a work file") from exc


def write_json(path: Path, data: dict) -> None:
    tmp = atomic_path(path)
    try:
        faults.disk_full("work", str(path))
        tmp.write_text(json.dumps(data, indent=2, default=_json_default))
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise os_error(exc, str(path), "a work file") from exc
    _commit(tmp, path)


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")


def save_mesh(path: Path, mesh: Mesh) -> None:
    arrays = {"vertices": mesh.vertices, "faces": mesh.faces}
    if mesh.normals is not None:
        arrays["normals"] = mesh.normals
    if mesh.uvs is not None:
        arrays["uvs"] = mesh.uvs
    if mesh.tangents is not None:
        arrays["tangents"] = mesh.tangents
    tmp = atomic_path(path).with_suffix(".npz")
    try:
        faults.disk_full("work", str(path))
        np.savez(tmp, **arrays)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise os_error(exc, str(path), "a work file") from exc
    _commit(tmp, path)


def load_mesh(path: Path) -> Mesh:
    with np.load(path, allow_pickle=False) as z:
        return Mesh(z["vertices"], z["faces"], z["normals"] if "normals" in z else None,
                    z["uvs"] if "uvs" in z else None, z["tangents"] if "tangents" in z else None)


def save_field(path: Path, tf, step: int, resume: dict | None = None) -> None:
    """Field checkpoint: tensors and plain values only, so it loads with weights_only=True.

    `resume` (mid-training checkpoints) adds the optimizer moments, the RNG state and the loop
    counters, so a killed run continues on the same trajectory instead of restarting Adam cold.
    """
    state = {
        "field": tf.field.state_dict(), "background": tf.background.state_dict(),
        "occ_distance": tf.occupancy.distance, "occ_mask": tf.occupancy.mask,
        "occ_updates": tf.occupancy.updates,
        "box": torch.tensor(np.stack([tf.box.lo, tf.box.hi])), "dt": tf.dt, "masked": tf.masked,
        "history": json.dumps(tf.history), "step": step,
    }
    if resume:
        state["resume"] = resume
    tmp = atomic_path(path)
    try:
        faults.disk_full("checkpoint", str(path))
        torch.save(state, tmp)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise os_error(exc, str(path), "a checkpoint") from exc
    _commit(tmp, path)


def load_field_state(path: Path) -> dict:
    """Tensors and plain values only: a tampered or torn work file fails here, never executes."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for disallowed objects, RuntimeError for a torn zip
        raise OutputError(f"unreadable checkpoint in the work folder ({type(exc).__name__})", path=str(path),
                          hint="delete it (or re-run with --redo train) to train again") from exc
    state["history"] = json.loads(state["history"])
    return state


def restore_field(tf, state: dict) -> int:
    """Load a checkpoint into a freshly built TrainedField; returns the step it was taken at."""
    tf.field.set_base(state["field"]["base_grid"])  # the prior's resolution varies per run
    tf.field.load_state_dict(state["field"])
    tf.background.load_state_dict(state["background"])
    occ = OccupancyGrid(state["occ_mask"].shape[0], state["occ_mask"], tf.occupancy.device)
    occ.distance = state.get("occ_distance", state.get("occ_density")).to(occ.device)  # older key name
    occ.updates = int(state["occ_updates"])
    tf.occupancy = occ
    box = state["box"].numpy()
    tf.box = Box(box[0], box[1])
    tf.dt = float(state["dt"])
    tf.masked = bool(state["masked"])
    tf.history = state["history"]
    return int(state["step"])
