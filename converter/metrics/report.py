"""The run's metrics: held-out views of the asset, geometry against a known mesh, the field's own
held-out PSNR. The report (nrconvert.report) shows and stores them."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import __version__
from ..capture.model import Capture
from ..mesh import Mesh
from .evaluate import evaluate_views
from .geometry import largest_component_share, surface_metrics


def compute_metrics(capture: Capture, mesh: Mesh, texture: np.ndarray, history: list[dict]) -> dict:
    """Quality of the asset itself: held-out views, and geometry against a GT mesh if known."""
    metrics: dict = {"version": __version__, "triangles": mesh.n_triangles,
                     "texture_size": list(texture.shape[:2]),
                     "largest_component_share": largest_component_share(mesh)}
    if capture.test:
        metrics["heldout"] = evaluate_views(mesh, texture, capture.test, eval_masks=eval_masks(capture))
    if capture.gt_mesh_path and Path(capture.gt_mesh_path).exists():
        from ..synth.ply import read_ply

        v, f = read_ply(Path(capture.gt_mesh_path))
        metrics["geometry"] = surface_metrics(mesh, Mesh(v, f))
    field_psnr = [h["test_psnr"] for h in history if "test_psnr" in h]
    if field_psnr:
        metrics["field_heldout_psnr"] = field_psnr[-1]
    return metrics


def eval_masks(capture: Capture) -> dict[str, Path]:
    """Object masks kept for evaluation only (synth opaque captures: `nrconvert_eval_mask`)."""
    extras = capture.extras.get("frame_extras") or {}
    return {path: Path(capture.root) / e["nrconvert_eval_mask"] for path, e in extras.items()
            if isinstance(e, dict) and e.get("nrconvert_eval_mask")}
