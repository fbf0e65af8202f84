"""Render an exported asset from a camera with the reference decoders: the neural material
(`export.neural.decode`) or the unlit captured texture. The ground truth the web preview and the
Blender node group are measured against, and what `nrconvert render` writes."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..capture.model import Frame
from ..export.frames import pose_to_gltf
from ..export.neural import decode, sample_bilinear
from ..export.reader import LodPrimitive
from .raster import rasterize_view

LOOKS = ("neural", "captured")


def to_asset_frame(frame: Frame, up_axis: str) -> Frame:
    """A capture-frame camera moved into the GLB's frame (where the mesh vertices are)."""
    return replace(frame, c2w=pose_to_gltf(frame.c2w, up_axis))


def render_primitive(prim: LodPrimitive, frame: Frame, look: str = "neural", downscale: int = 1
                     ) -> tuple[np.ndarray, np.ndarray]:
    """sRGB (H, W, 3) float in [0, 1] over black and the coverage mask (H, W) from `frame`
    (given in the asset's frame). Bilinear texture lookups without mipmaps, as the decoders do."""
    frags = rasterize_view(frame, prim.positions, prim.faces, downscale)
    hit = frags.tri >= 0
    tri = prim.faces[frags.tri[hit]]
    bary = frags.bary[hit][..., None]
    uv = (prim.uvs[tri] * bary).sum(1)
    img = np.zeros(hit.shape + (3,), np.float32)
    if look == "neural":
        if prim.neural is None:
            raise ValueError(f"{prim.name} has no neural material")
        pos = (prim.positions[tri] * bary).sum(1)
        img[hit] = decode(prim.neural, uv, pos - frame.c2w[:3, 3])
    elif look == "captured":
        if prim.captured_texture is None:
            raise ValueError(f"{prim.name} has no captured texture")
        img[hit] = sample_bilinear(prim.captured_texture, uv) / 255.0
    else:
        raise ValueError(f"look must be one of {LOOKS}, got {look!r}")
    return img, hit
