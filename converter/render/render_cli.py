"""`nrconvert render`: argument checks and file handling around `asset_view.render_primitive`."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from ..capture.transforms import load_cameras
from ..errors import AssetError, UsageError
from ..export.container import atomic_write
from ..export.reader import GlbError, lod_primitives, read_glb
from .asset_view import LOOKS, render_primitive, to_asset_frame


def render_to_png(glb: Path, camera: Path, frame: int, output: Path, *, look: str = "neural",
                  lod: int = 0, downscale: int = 1, samples: int = 1) -> Path:
    if look not in LOOKS:
        raise UsageError(f"--look must be one of {', '.join(LOOKS)}, got {look!r}")
    if downscale < 1:
        raise UsageError(f"--downscale must be >= 1, got {downscale}")
    if not 1 <= samples <= 16:
        raise UsageError(f"--samples must be 1..16 (sub-pixels per side), got {samples}")
    if not Path(glb).is_file():
        raise AssetError("no such file", path=str(glb))
    try:
        doc = read_glb(glb)
        prims = lod_primitives(doc)
    except (GlbError, OSError) as exc:
        raise AssetError(str(exc), path=str(glb), hint="re-export it with nrconvert") from None
    if not 0 <= lod < len(prims):
        raise UsageError(f"--lod {lod}: the asset has LODs 0..{len(prims) - 1}")
    prim = prims[lod]
    if look == "neural" and prim.neural is None:
        raise AssetError(f"LOD{lod} has no neural material", path=str(glb), hint="use --look captured")
    frames = load_cameras(camera)
    if not 0 <= frame < len(frames):
        raise UsageError(f"--frame {frame}: {camera} has cameras 0..{len(frames) - 1}")
    up = str(((doc.doc.get("asset") or {}).get("extras") or {}).get("nrconvert", {}).get("up_axis", "z"))
    img, cover = render_primitive(prim, to_asset_frame(frames[frame], up), look, downscale, samples)
    cover = cover.astype(np.float32)
    straight = img / np.maximum(cover, 1e-6)[..., None]  # PNG alpha is straight, the render premultiplied
    rgba = np.concatenate([straight, cover[..., None]], -1)
    buf = io.BytesIO()
    Image.fromarray((np.clip(rgba, 0, 1) * 255 + 0.5).astype(np.uint8), "RGBA").save(buf, format="PNG")
    atomic_write(Path(output), buf.getvalue(), what="the rendered image")
    return Path(output)
