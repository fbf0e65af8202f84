"""Photo pixels as footprints for the neural material: each pixel is the mean of S x S sub-samples.

A photo's pixel integrates the surface over its footprint (a camera's sensor, or a renderer's
anti-aliasing), and the asset is judged the same way: rendered anti-aliased, compared with the
photo. Fitting each pixel's colour to the single surface point under its centre blurs twice —
once in the photo, once more in the anti-aliased render — wherever the look changes within a
pixel: texture edges, highlights, silhouettes. Fitting the *mean* of the decoder over the pixel's
sub-samples to the pixel instead asks the features for what, averaged over the footprint, gives
the photo (measured on the specular suzanne, held-out, anti-aliased: +0.2 dB at 128² features,
+0.3 dB with the finer features the sub-samples support; bench/RESULTS.md).

With a mask the comparison is premultiplied: a silhouette pixel the mesh covers in part is
matched by its covered sub-samples against the photo's colour times its alpha. Without one the
silhouette pixels are dropped, as `render.raster.photo_object_pixels` does for pixel centres.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..capture.images import load_frame_image
from ..capture.model import Frame
from ..export.neural import uses_normals, view_inputs
from ..mesh import Mesh, vertex_normals
from ..render.raster import rasterize_view, supersampled
from .texture import interpolate


@dataclass
class PixelSamples:
    """Photo pixels, each with its K = S x S sub-samples on the mesh."""

    uv: np.ndarray  # (N, K, 2) float32, glTF convention (0 where the sub-sample misses the mesh)
    view: np.ndarray  # (N, K, C) float32, as `bake.neural.ViewSamples.view`
    hit: np.ndarray  # (N, K) float32: 1 where the mesh covers the sub-sample
    rgb: np.ndarray  # (N, 3) float32 sRGB, premultiplied by the photo's alpha

    def covered(self) -> int:
        """How many sub-samples land on the mesh (what sizes the features, like a sample count)."""
        return int(self.hit.sum())


def pixel_samples(mesh: Mesh, frame: Frame, rotation: np.ndarray, downscale: int, encoding: str,
                  footprint: int) -> PixelSamples:
    """The photo's object pixels with `footprint` x `footprint` sub-samples each."""
    s = footprint
    h, w = frame.height // downscale, frame.width // downscale
    frags = rasterize_view(supersampled(frame, s, downscale), mesh.vertices, mesh.faces, 1, cull_backfaces=True)
    hit = frags.tri >= 0
    pos = interpolate(mesh.vertices, mesh.faces, frags)[hit]
    view_hit = mesh_view_inputs(mesh, frags, hit, pos - frame.c2w[:3, 3], encoding, rotation)
    uv = np.zeros(hit.shape + (2,), np.float32)
    uv[hit] = interpolate(mesh.uvs, mesh.faces, frags)[hit]
    view = np.zeros(hit.shape + (view_hit.shape[1],), np.float32)
    view[hit] = view_hit
    uv, view, cover = (_per_pixel(a, h, w, s) for a in (uv, view, hit[..., None].astype(np.float32)))
    cover = cover[..., 0]
    rgb, alpha = load_frame_image(frame, downscale)
    if alpha is None:  # no mask: only pixels the mesh covers whole (no background blended in)
        keep, target = cover.min(-1) > 0, rgb
    else:
        keep, target = (alpha > 0.5) & (cover.max(-1) > 0), rgb * alpha[..., None]
    return PixelSamples(uv[keep], view[keep], cover[keep], target[keep].astype(np.float32))


def mesh_view_inputs(mesh: Mesh, frags, hit: np.ndarray, d: np.ndarray, encoding: str, rotation: np.ndarray
                 ) -> np.ndarray:
    """`export.neural.view_inputs` in the asset frame (mirror and n.v commute with the rotation),
    with the interpolated normals the GLB will store."""
    normals = None
    if uses_normals(encoding):
        vn = mesh.normals if mesh.normals is not None else vertex_normals(mesh.vertices, mesh.faces)
        normals = interpolate(vn, mesh.faces, frags)[hit] @ rotation.T
    return view_inputs(d @ rotation.T, encoding, normals)


def _per_pixel(a: np.ndarray, h: int, w: int, s: int) -> np.ndarray:
    """(h*s, w*s, C) sub-sample image -> (h, w, s*s, C)."""
    return a.reshape(h, s, w, s, -1).transpose(0, 2, 1, 3, 4).reshape(h, w, s * s, -1)


def concat_pixels(parts: list[PixelSamples]) -> PixelSamples:
    return PixelSamples(*(np.concatenate([getattr(p, k) for p in parts]) for k in ("uv", "view", "hit", "rgb")))


def pixel_colour(dec: torch.nn.Module, uv: torch.Tensor, view: torch.Tensor, hit: torch.Tensor) -> torch.Tensor:
    """(B, 3) premultiplied colour of B pixels: the decoder averaged over each one's sub-samples."""
    b, k = hit.shape
    c = dec(uv.reshape(b * k, 2), view.reshape(b * k, -1)).reshape(b, k, 3)
    return (c * hit[..., None]).mean(1)
