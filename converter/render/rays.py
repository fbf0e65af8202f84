"""Camera rays in the capture frame, and the object box they are marched through."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..capture.model import Frame


@dataclass
class Box:
    """Axis-aligned box of the object, capture frame. The field sees it as [0, 1]^3."""

    lo: np.ndarray  # (3,)
    hi: np.ndarray  # (3,)

    @property
    def size(self) -> np.ndarray:
        return self.hi - self.lo

    @property
    def diagonal(self) -> float:
        return float(np.linalg.norm(self.size))

    def to_unit(self, p: torch.Tensor) -> torch.Tensor:
        lo = torch.as_tensor(self.lo, dtype=p.dtype, device=p.device)
        return (p - lo) / torch.as_tensor(self.size, dtype=p.dtype, device=p.device)

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        return self.lo + u * self.size


def frame_rays(frame: Frame, downscale: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Origins and unit directions (H, W, 3) through pixel centres, OpenGL camera convention."""
    w, h = frame.width // downscale, frame.height // downscale
    sx, sy = frame.width / w, frame.height / h
    i, j = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5, indexing="xy")
    x = (i * sx - frame.cx) / frame.fx
    y = -(j * sy - frame.cy) / frame.fy
    dirs_cam = np.stack([x, y, -np.ones_like(x)], axis=-1)
    rot = frame.c2w[:3, :3]
    d = dirs_cam @ rot.T
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    o = np.broadcast_to(frame.c2w[:3, 3], d.shape)
    return o.astype(np.float32), d.astype(np.float32)


def intersect_box(o: torch.Tensor, d: torch.Tensor, box: Box) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry/exit distances along each ray (near > far where the ray misses)."""
    lo = torch.as_tensor(box.lo, dtype=o.dtype, device=o.device)
    hi = torch.as_tensor(box.hi, dtype=o.dtype, device=o.device)
    inv = 1.0 / torch.where(d.abs() < 1e-9, torch.full_like(d, 1e-9), d)
    t0, t1 = (lo - o) * inv, (hi - o) * inv
    near = torch.minimum(t0, t1).amax(-1).clamp(min=0.0)
    far = torch.maximum(t0, t1).amin(-1)
    return near, far
