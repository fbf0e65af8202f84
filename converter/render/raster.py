"""Triangle rasterization of numpy meshes, screen space (z-buffered) and UV space.

A thin numpy face over `nrconvert.kernels.raster` (the C++/CUDA extension, or its torch
reference): per pixel, the covering triangle id (-1 for none) and barycentrics; callers interpolate
attributes themselves. The coverage, depth and tie rules are documented there.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from ..capture.model import Frame
from ..kernels import raster as kernels


@dataclass
class Fragments:
    tri: np.ndarray  # (H, W) int64, -1 where empty
    bary: np.ndarray  # (H, W, 3) float32; rasterize_view makes them perspective-correct
    depth: np.ndarray  # (H, W) float32, inf where empty (0 where covered in UV space)


def rasterize(p: np.ndarray, faces: np.ndarray, h: int, w: int, z: np.ndarray | None = None) -> Fragments:
    """Rasterize 2D vertex positions `p` (V, 2) in pixel units; `z` (V,) enables the z-buffer.

    With `z`, triangles with a vertex at z <= 0 are dropped (clip them first); the nearest fragment
    wins. Without it (UV space), overlapping triangles resolve to the smallest id.
    """
    xy = torch.from_numpy(np.ascontiguousarray(p, dtype=np.float32))
    f = torch.from_numpy(np.ascontiguousarray(faces, dtype=np.int32))
    if z is None:
        tri, bary = kernels.rasterize_uv(xy, f, h, w)
        depth = torch.where(tri >= 0, 0.0, float("inf"))
    else:
        zz = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))
        tri, bary, depth = kernels.rasterize(torch.cat([xy, zz[:, None]], 1), f, h, w)
    return Fragments(tri.numpy().astype(np.int64), bary.numpy(), depth.numpy())


def project(frame: Frame, vertices: np.ndarray, downscale: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Pixel positions (V, 2) and view depth (V,) of capture-frame vertices in a camera."""
    w2c = np.linalg.inv(frame.c2w)
    pc = vertices @ w2c[:3, :3].T + w2c[:3, 3]
    z = -pc[:, 2]
    zs = np.where(z > 1e-6, z, 1e-6)
    u = (pc[:, 0] / zs * frame.fx + frame.cx) / downscale
    v = (-pc[:, 1] / zs * frame.fy + frame.cy) / downscale
    return np.stack([u, v], -1), z


def supersampled(frame: Frame, samples: int, downscale: int = 1) -> Frame:
    """`frame` at `samples` x `samples` sub-pixels per pixel of its `downscale`d size: sub-pixel
    (i, j) of pixel (y, x) is pixel (y * samples + i, x * samples + j) of the result."""
    k = samples / downscale
    return replace(frame, fx=frame.fx * k, fy=frame.fy * k, cx=frame.cx * k, cy=frame.cy * k,
                   width=frame.width // downscale * samples, height=frame.height // downscale * samples)


def rasterize_view(frame: Frame, vertices: np.ndarray, faces: np.ndarray, downscale: int = 1,
                   cull_backfaces: bool = False) -> Fragments:
    """Fragments of a mesh seen by a capture camera (triangles behind it dropped), with
    perspective-correct barycentrics, as GPU renderers (Blender, WebGL) interpolate attributes.

    `cull_backfaces` (closed, outward-wound meshes only) halves the work of texture fitting.
    """
    p, z = project(frame, vertices, downscale)
    visible = (z[faces] > 1e-4).all(1)
    if cull_backfaces:
        v = vertices[faces]
        normal = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
        visible &= (normal * (v[:, 0] - frame.c2w[:3, 3])).sum(1) < 0
    frags = rasterize(p, faces[visible], frame.height // downscale, frame.width // downscale, z)
    ids = np.flatnonzero(visible)
    if len(ids) == 0:  # the camera sees none of the mesh (a long scene's far end): nothing hit
        frags.tri = np.full_like(frags.tri, -1)
        return frags
    frags.tri = np.where(frags.tri >= 0, ids[np.maximum(frags.tri, 0)], -1)
    hit = frags.tri >= 0
    # screen-space weights b_i become b_i / z_i, renormalised: linear in 3D, not on the screen
    w = frags.bary[hit] / z[faces[frags.tri[hit]]]
    frags.bary[hit] = (w / w.sum(1, keepdims=True)).astype(frags.bary.dtype)
    return frags


def photo_object_pixels(tri: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """Pixels (H, W bool) where a photo shows the mesh's surface: covered by the mesh and, with a
    mask, foreground. Without a mask the mesh's silhouette pixels are dropped too: they blend the
    surface with whatever lies behind it, and with no alpha there is no telling how much (measured
    on the opaque synth capture: those pixels smeared the background into the texels along the
    silhouette). The frame's own border does not count as a silhouette."""
    hit = tri >= 0
    if alpha is not None:
        return hit & (alpha > 0.5)
    from scipy.ndimage import binary_erosion

    return binary_erosion(hit, iterations=1, border_value=1)
