"""Binary little-endian PLY of a triangle mesh, numpy only.

The ground-truth mesh is written inside Blender and read back by metrics and tests, so both sides
use this one tiny codec rather than another dependency.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

_FACE_DTYPE = np.dtype([("n", "u1"), ("idx", "<i4", (3,))])

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "<i2", "int16": "<i2", "ushort": "<u2", "uint16": "<u2",
    "int": "<i4", "int32": "<i4", "uint": "<u4", "uint32": "<u4",
    "float": "<f4", "float32": "<f4", "double": "<f8", "float64": "<f8",
}


def write_ply(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Write float32 vertices (N,3) and triangles (M,3) as binary little-endian PLY."""
    vertices = np.ascontiguousarray(vertices, dtype="<f4").reshape(-1, 3)
    faces = np.asarray(faces, dtype="<i4").reshape(-1, 3)
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment written by nrconvert.synth\n"
        f"element vertex {len(vertices)}\nproperty float x\nproperty float y\nproperty float z\n"
        f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    face_rec = np.empty(len(faces), dtype=_FACE_DTYPE)
    face_rec["n"] = 3
    face_rec["idx"] = faces
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(vertices.tobytes())
        f.write(face_rec.tobytes())


def _parse_header(f) -> tuple[list[tuple[str, int, list[list[str]]]], str]:
    if f.readline().strip() != b"ply":
        raise ValueError("not a PLY file")
    elements: list[tuple[str, int, list[list[str]]]] = []
    fmt = ""
    while True:
        line = f.readline()
        if not line:
            raise ValueError("PLY header has no end_header")
        words = line.decode("ascii").split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "end_header":
            return elements, fmt
        if words[0] == "format":
            fmt = words[1]
        elif words[0] == "element":
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property":
            elements[-1][2].append(words[1:])


def read_ply(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (N,3) float32 and triangles (M,3) int64 of a binary little-endian PLY.

    Reads any scalar vertex properties (only x, y, z are kept) and triangle faces with any list
    count/index types, which covers what Blender, trimesh and Open3D write.
    """
    with open(path, "rb") as f:
        elements, fmt = _parse_header(f)
        if fmt != "binary_little_endian":
            raise ValueError(f"unsupported PLY format {fmt!r}")
        verts = np.zeros((0, 3), np.float32)
        faces = np.zeros((0, 3), np.int64)
        for name, count, props in elements:
            if any(p[0] == "list" for p in props):
                if len(props) != 1:
                    raise ValueError("only one list property per element is supported")
                _, count_t, index_t, _ = props[0]
                dt = np.dtype([("n", _PLY_TYPES[count_t]), ("idx", _PLY_TYPES[index_t], (3,))])
                rec = np.frombuffer(f.read(dt.itemsize * count), dtype=dt)
                if np.any(rec["n"] != 3):
                    raise ValueError("only triangle faces are supported")
                if name == "face":
                    faces = rec["idx"].astype(np.int64)
                continue
            dt = np.dtype([(p[1], _PLY_TYPES[p[0]]) for p in props])
            rec = np.frombuffer(f.read(dt.itemsize * count), dtype=dt)
            if name == "vertex":
                verts = np.stack([rec["x"], rec["y"], rec["z"]], axis=1).astype(np.float32)
    return verts, faces
