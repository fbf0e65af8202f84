"""scene.report/: metrics.json, a held-out comparison picture and a small index.html."""
from __future__ import annotations

import html
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from .. import __version__
from ..capture.images import load_frame_image
from ..capture.model import Capture
from ..checkpoint import write_json
from ..mesh import Mesh
from .evaluate import evaluate_views, render_textured
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


def comparison_image(capture: Capture, mesh: Mesh, texture: np.ndarray, n: int = 4) -> np.ndarray:
    """Rows of (photo | render of the asset) for the first held-out views."""
    rows = []
    for f in capture.test[:n]:
        render, _ = render_textured(mesh, texture, f)
        rgb, alpha = load_frame_image(f)
        photo = rgb * alpha[..., None] if alpha is not None else rgb
        rows.append(np.concatenate([photo, render], axis=1))
    return (np.clip(np.concatenate(rows, axis=0), 0, 1) * 255).astype(np.uint8)


def write_report(report_dir: Path, capture: Capture, mesh: Mesh, texture: np.ndarray, metrics: dict,
                 timings: dict, history: list[dict], glb: Path) -> None:
    report_dir.mkdir(parents=True, exist_ok=True)
    metrics = {**metrics, "timings_s": {k: round(v, 2) for k, v in timings.items()},
               "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "glb": str(glb)}
    write_json(report_dir / "metrics.json", metrics)
    write_json(report_dir / "training.json", {"history": history})
    if capture.test:
        Image.fromarray(comparison_image(capture, mesh, texture)).save(report_dir / "heldout.png")
    (report_dir / "index.html").write_text(_html(metrics, bool(capture.test)))


def _html(metrics: dict, has_views: bool) -> str:
    shown = {k: v for k, v in metrics.items() if k != "heldout"}
    held = {k: v for k, v in metrics.get("heldout", {}).items() if k != "per_view"}
    body = [f"<h1>nrconvert report</h1><p>{html.escape(metrics.get('glb', ''))}</p>",
            "<h2>Held-out views</h2><pre>" + html.escape(json.dumps(held, indent=2)) + "</pre>"]
    if has_views:
        body.append('<p>photo (left) | exported asset (right)</p><img src="heldout.png">')
    body.append("<h2>All metrics</h2><pre>" + html.escape(json.dumps(shown, indent=2)) + "</pre>")
    return "<!doctype html><meta charset=utf-8><title>nrconvert report</title>" + "".join(body)
