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
from .raster import rasterize_view, supersampled

LOOKS = ("neural", "captured")


def to_asset_frame(frame: Frame, up_axis: str) -> Frame:
    """A capture-frame camera moved into the GLB's frame (where the mesh vertices are)."""
    return replace(frame, c2w=pose_to_gltf(frame.c2w, up_axis))


def render_primitive(prim: LodPrimitive, frame: Frame, look: str = "neural", downscale: int = 1,
                     samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """sRGB (H, W, 3) float in [0, 1] over black and the coverage (H, W) from `frame` (given in
    the asset's frame). Bilinear texture lookups without mipmaps, as the decoders do.

    `samples` > 1 renders samples x samples sub-pixels per pixel and averages them (colour
    premultiplied, coverage in [0, 1]), as an anti-aliased renderer or a camera does: a photo's
    silhouette pixels are partly covered, and against them one sample per pixel scores only
    27.9 dB on the torus knot's object pixels with its exact geometry and colours (bench/neural.py).
    With 1 (the decoders' own convention, what the web preview and Blender are compared with)
    coverage is a bool mask."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    h, w = frame.height // downscale, frame.width // downscale
    if samples > 1:
        frame, downscale = supersampled(frame, samples, downscale), 1
    frags = rasterize_view(frame, prim.positions, prim.faces, downscale)
    hit = frags.tri >= 0
    img = np.zeros(hit.shape + (3,), np.float32)
    img[hit] = _shade(prim, frame, frags.tri[hit], frags.bary[hit], look)
    if samples == 1:
        return img, hit
    pool = (h, samples, w, samples)
    return img.reshape(pool + (3,)).mean((1, 3)), hit.reshape(pool).mean((1, 3), dtype=np.float32)


def _shade(prim: LodPrimitive, frame: Frame, tri_ids: np.ndarray, bary: np.ndarray, look: str,
           chunk: int = 1 << 18) -> np.ndarray:
    """Colours of the covered (sub-)pixels, `chunk` at a time: a supersampled frame has millions."""
    if look not in LOOKS:
        raise ValueError(f"look must be one of {LOOKS}, got {look!r}")
    if look == "neural" and prim.neural is None:
        raise ValueError(f"{prim.name} has no neural material")
    if look == "captured" and prim.captured_texture is None:
        raise ValueError(f"{prim.name} has no captured texture")
    out = np.zeros((len(tri_ids), 3), np.float32)
    for a in range(0, len(tri_ids), chunk):
        tri = prim.faces[tri_ids[a:a + chunk]]
        b = bary[a:a + chunk][..., None]
        uv = (prim.uvs[tri] * b).sum(1)
        if look == "neural":
            pos = (prim.positions[tri] * b).sum(1)
            normals = None if prim.normals is None else (prim.normals[tri] * b).sum(1)
            out[a:a + chunk] = decode(prim.neural, uv, pos - frame.c2w[:3, 3], normals)
        else:
            out[a:a + chunk] = sample_bilinear(prim.captured_texture, uv) / 255.0
    return out
