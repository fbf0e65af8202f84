"""Plain triangle-mesh container passed between extract, bake, export and metrics."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Mesh:
    """Indexed triangles. With `uvs`, vertices are already split along UV seams (one UV per vertex)."""

    vertices: np.ndarray  # (V, 3) float32
    faces: np.ndarray  # (F, 3) int32/int64
    normals: np.ndarray | None = None  # (V, 3) float32, unit
    uvs: np.ndarray | None = None  # (V, 2) float32, glTF convention: origin top-left, v down
    # (V, 4) float32 glTF TANGENT: xyz along +u, w = +-1 with bitangent = cross(normal, xyz) * w
    # pointing to image-up (-v in glTF UVs), as MikkTSpace computes it on Blender's flipped UVs
    tangents: np.ndarray | None = None

    @property
    def n_triangles(self) -> int:
        return int(len(self.faces))

    def face_areas(self) -> np.ndarray:
        v = self.vertices[self.faces]
        return 0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1)

    def bbox_diagonal(self) -> float:
        return float(np.linalg.norm(self.vertices.max(0) - self.vertices.min(0)))


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals (unit length; zero-area fans get +Z)."""
    v = vertices[faces]
    fn = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    n = np.zeros_like(vertices, dtype=np.float64)
    for k in range(3):
        np.add.at(n, faces[:, k], fn)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    n = np.where(length > 1e-20, n / np.maximum(length, 1e-20), np.array([0.0, 0.0, 1.0]))
    return n.astype(np.float32)
