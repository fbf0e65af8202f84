"""`render_glb`: an exported GLB as a real renderer (Blender Cycles) shows it, from a capture's cameras.

Quality benchmarks compare these renders with the capture's held-out views, so the GLB goes through
Blender's own glTF importer and is lit and rendered exactly as the capture was.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from nrconvert.errors import CaptureError, UsageError
from nrconvert.synth._runner import Progress, run_blender_job
from nrconvert.synth.capture import world_spec
from nrconvert.synth.presets import DEFAULT_HDRI, DEFAULT_RELIGHT_HDRI, check_hdri

DEFAULT_SAMPLES = 64  # for captures that do not record their own (not made by `render_capture`)


def _load_split(capture_dir: Path, split: str) -> dict[str, Any]:
    path = capture_dir / f"transforms_{split}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CaptureError(f"cannot read the {split!r} split: {exc.strerror}", path=str(path)) from exc
    except ValueError as exc:
        raise CaptureError(f"not valid JSON: {exc}", path=str(path)) from exc
    if not isinstance(data, dict) or not data.get("frames"):
        raise CaptureError("has no frames", path=str(path))
    return data


def _image_size(capture_dir: Path, data: dict[str, Any]) -> tuple[int, int]:
    """`w`/`h` from the JSON, else from the first image (original NeRF-synthetic files lack them)."""
    if "w" in data and "h" in data:
        return int(data["w"]), int(data["h"])
    from PIL import Image

    fp = capture_dir / data["frames"][0]["file_path"]
    path = fp if fp.suffix else fp.with_suffix(".png")
    with Image.open(path) as im:
        return im.size


def _camera(capture_dir: Path, data: dict[str, Any]) -> dict[str, Any]:
    """Resolution, horizontal FOV and principal-point shift (Blender units) of the split."""
    w, h = _image_size(capture_dir, data)
    if "camera_angle_x" in data:
        angle = float(data["camera_angle_x"])
    elif "fl_x" in data:
        angle = 2.0 * math.atan(0.5 * w / float(data["fl_x"]))
    else:
        raise CaptureError("has neither camera_angle_x nor fl_x", path=str(capture_dir))
    size = max(w, h)
    shift = ((w / 2.0 - float(data.get("cx", w / 2.0))) / size, (float(data.get("cy", h / 2.0)) - h / 2.0) / size)
    return {"w": w, "h": h, "camera_angle_x": angle, "shift": shift}


def _world(block: dict[str, Any], world: str) -> dict[str, Any]:
    if world not in ("world", "relight_world"):
        raise UsageError(f"world must be 'world' or 'relight_world', not {world!r}")
    if not block:
        return world_spec(DEFAULT_HDRI if world == "world" else DEFAULT_RELIGHT_HDRI)
    if world not in block:
        raise CaptureError(f"the capture's nrconvert block has no {world!r}")
    spec = dict(block[world])
    spec["hdri"] = check_hdri(spec["hdri"])
    return spec


def glb_options(lod: int | None = None, variant: str | None = None, normal_map: bool = True,
                captured_as_base_color: bool = False) -> dict[str, Any]:
    """The Blender-side evaluation options, checked before paying for a Blender start-up.

    `lod`: render only the node `*_LOD<lod>` (None: LOD0, as a loader without MSFT_lod shows it).
    `variant`: a KHR_materials_variants name (e.g. 'captured'); None keeps the default material.
    `normal_map=False`: unlink the normal maps, for the with/without comparison.
    `captured_as_base_color`: the relighting baseline, the PBR material with the photo-lit
    'captured' texture as Base Color.
    """
    if lod is not None and (isinstance(lod, bool) or not isinstance(lod, int) or lod < 0):
        raise UsageError(f"lod must be a non-negative integer or None, not {lod!r}")
    if variant is not None and (not isinstance(variant, str) or not variant):
        raise UsageError(f"variant must be a variant name or None, not {variant!r}")
    if variant is not None and captured_as_base_color:
        raise UsageError("captured_as_base_color modifies the default PBR material; do not also pick a variant")
    return {"lod": lod, "variant": variant, "normal_map": bool(normal_map),
            "captured_as_base_color": bool(captured_as_base_color)}


def render_glb(glb_path: Path, capture_dir: Path, out_dir: Path, *, split: str = "test",
               world: str = "world", samples: int | None = None, lod: int | None = None,
               variant: str | None = None, normal_map: bool = True, captured_as_base_color: bool = False,
               progress: Progress | None = None) -> list[Path]:
    """Render `glb_path` from every camera of the capture's `split`; return the PNG paths in frame order.

    Each image is `out_dir/<stem of the frame's file_path>.png`. World, film transparency, samples,
    denoising and seed follow the capture's `nrconvert` block (`samples` overrides). `lod`,
    `variant`, `normal_map` and `captured_as_base_color` are described in `glb_options`; the
    defaults render LOD0 with the default material, as a plain glTF viewer would.
    """
    options = glb_options(lod, variant, normal_map, captured_as_base_color)
    glb_path = Path(glb_path).expanduser().resolve()
    if not glb_path.is_file():
        raise UsageError("GLB file not found", path=str(glb_path))
    capture_dir = Path(capture_dir).expanduser().resolve()
    data = _load_split(capture_dir, split)
    block = data.get("nrconvert") or {}
    out_dir = Path(out_dir).expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / (Path(f["file_path"]).stem + ".png") for f in data["frames"]]
    render = {
        **_camera(capture_dir, data),
        "samples": int(samples if samples is not None else block.get("samples", DEFAULT_SAMPLES)),
        "denoise": bool(block.get("denoise", False)),
        "seed": int(block.get("seed", 0)),
        "background": block.get("background", "transparent"),
    }
    views = [{"matrix": f["transform_matrix"], "path": str(p)} for f, p in zip(data["frames"], paths)]
    run_blender_job({
        "scene": {"glb": str(glb_path), **options},
        "render": render,
        "worlds": {"render_world": _world(block, world)},
        "passes": [{"mode": "image", "world": "render_world", "views": views}],
        "gt_mesh": None,
    }, progress)
    return paths
