"""Surface accuracy against a ground-truth mesh: Chamfer-L1 and F-score on area-sampled points."""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from ..mesh import Mesh


def sample_surface(mesh: Mesh, n: int, seed: int = 0) -> np.ndarray:
    """`n` points uniformly distributed over the surface area."""
    return sample_surface_faces(mesh, n, seed)[0]


def sample_surface_faces(mesh: Mesh, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` area-uniform surface points and the face each lies on (to tell parts of a mesh apart)."""
    rng = np.random.default_rng(seed)
    area = mesh.face_areas()
    tri = rng.choice(len(area), size=n, p=area / area.sum())
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    b = np.stack([1 - s, s * (1 - r2), s * r2], -1)
    return (mesh.vertices[mesh.faces[tri]] * b[..., None]).sum(1), tri


def surface_metrics(pred: Mesh, gt: Mesh, n: int = 100_000, tau_ratio: float = 0.01) -> dict:
    """Chamfer-L1 (mean of both directions), F-score at tau = `tau_ratio` of the GT bbox diagonal."""
    a = sample_surface(pred, n, seed=1)
    b = sample_surface(gt, n, seed=2)
    d_ab = cKDTree(b).query(a, workers=-1)[0]
    d_ba = cKDTree(a).query(b, workers=-1)[0]
    diag = gt.bbox_diagonal()
    tau = tau_ratio * diag
    precision = float((d_ab < tau).mean())
    recall = float((d_ba < tau).mean())
    chamfer = 0.5 * float(d_ab.mean() + d_ba.mean())
    return {
        "chamfer_l1": chamfer,
        "chamfer_ratio_of_bbox_diagonal": chamfer / diag,
        "fscore": 2 * precision * recall / max(precision + recall, 1e-12),
        "precision": precision,
        "recall": recall,
        "tau": tau,
        "gt_bbox_diagonal": diag,
    }


def largest_component_share(mesh: Mesh) -> float:
    """Share of the surface area held by the largest connected component."""
    from ..bake.extract import components

    labels = components(mesh)
    area = np.bincount(labels, weights=mesh.face_areas())
    return float(area.max() / area.sum())
