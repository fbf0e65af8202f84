"""Frame conversion between the capture's world frame and glTF's Y-up frame.

glTF is Y-up; Blender and nerfstudio captures are Z-up. The swap glTF (x, y, z) = capture
(x, z, -y) is exactly what Blender's glTF exporter writes, so Blender's importer (which maps glTF
(x, y, z) to Blender (x, -z, y)) puts the asset back where the capture's cameras expect it.
Kept free of pygltflib and torch so the Blender tests and the add-on can reuse it.
"""
from __future__ import annotations

import numpy as np

# Rotation taking capture coordinates to glTF coordinates, per capture up axis.
_SWAPS: dict[str, np.ndarray] = {
    "z": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]),
    "y": np.eye(3),
}


def capture_to_gltf_rotation(up_axis: str) -> np.ndarray:
    """3x3 rotation (det +1) mapping capture-frame vectors to glTF vectors."""
    try:
        return _SWAPS[up_axis].copy()
    except KeyError:
        raise ValueError(f"up_axis must be one of {sorted(_SWAPS)}, got {up_axis!r}") from None


def capture_to_gltf_matrix(up_axis: str) -> np.ndarray:
    """4x4 homogeneous form of the axis swap (recorded in asset.extras.nrconvert)."""
    m = np.eye(4)
    m[:3, :3] = capture_to_gltf_rotation(up_axis)
    return m


def points_to_gltf(points: np.ndarray, up_axis: str) -> np.ndarray:
    """Positions or normals (N, 3) from the capture frame into glTF, as float32.

    The swap is a pure rotation, so the same map is right for normals too.
    """
    rot = capture_to_gltf_rotation(up_axis)
    return (np.asarray(points, dtype=np.float64) @ rot.T).astype(np.float32)


def pose_to_gltf(c2w: np.ndarray, up_axis: str) -> np.ndarray:
    """Camera-to-world 4x4 (OpenGL convention) into glTF world.

    OpenGL cameras and glTF cameras share the local convention (look down -Z, +Y up), so only the
    world side changes: the swap multiplies from the left.
    """
    return capture_to_gltf_matrix(up_axis) @ np.asarray(c2w, dtype=np.float64)


def nearest_rotation(m: np.ndarray) -> np.ndarray:
    """Closest proper rotation to a 3x3 matrix (SVD), so slightly non-orthonormal poses from SfM
    or float32 round-trips still give unit quaternions that validators accept."""
    u, _, vt = np.linalg.svd(np.asarray(m, dtype=np.float64))
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


def rotation_to_quaternion(r: np.ndarray) -> np.ndarray:
    """Unit quaternion in glTF order (x, y, z, w) of a 3x3 rotation, w >= 0 (Shepperd's method)."""
    r = nearest_rotation(r)
    trace = float(np.trace(r))
    if trace > 0.0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [(r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s, 0.25 * s]
    else:
        i = int(np.argmax(np.diag(r)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + r[i, i] - r[j, j] - r[k, k])
        q = [0.0, 0.0, 0.0, (r[k, j] - r[j, k]) / s]
        q[i] = 0.25 * s
        q[j] = (r[j, i] + r[i, j]) / s
        q[k] = (r[k, i] + r[i, k]) / s
    quat = np.asarray(q, dtype=np.float64)
    quat /= np.linalg.norm(quat)
    return -quat if quat[3] < 0 else quat


def quaternion_to_rotation(q: np.ndarray) -> np.ndarray:
    """3x3 rotation of a glTF-ordered (x, y, z, w) quaternion (used by tests and readers)."""
    x, y, z, w = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def pose_to_trs(c2w_gltf: np.ndarray) -> tuple[list[float], list[float]]:
    """(translation, rotation quaternion xyzw) of a rigid glTF pose, as plain float lists."""
    m = np.asarray(c2w_gltf, dtype=np.float64)
    quat = rotation_to_quaternion(m[:3, :3])
    return [float(v) for v in m[:3, 3]], [float(v) for v in quat]
