"""Writers for small but real capture folders (PNGs, transforms.json, COLMAP text and binary).

Shared by the capture-loader tests; everything is written with independent code (PIL, json,
struct, scipy's Rotation) so the loaders are checked against the file formats, not themselves.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.spatial.transform import Rotation

COLMAP_MODEL_IDS = {"SIMPLE_PINHOLE": 0, "PINHOLE": 1, "SIMPLE_RADIAL": 2, "RADIAL": 3, "OPENCV": 4,
                    "OPENCV_FISHEYE": 5, "FULL_OPENCV": 6}


def pattern(width: int, height: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    """A deterministic uint8 test image."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)


def write_png(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def write_json(path: Path, doc: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1))
    return path


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, 0.0, 1.0])) -> np.ndarray:
    """OpenGL camera-to-world looking from eye at target (camera -Z forward, +Y up)."""
    back = eye - target
    back = back / np.linalg.norm(back)
    right = np.cross(up, back)
    right /= np.linalg.norm(right)
    cam_up = np.cross(back, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, cam_up, back, eye
    return c2w


def ring(n: int, radius: float = 4.0, height: float = 1.5, target=(0.0, 0.0, 0.0)) -> list[np.ndarray]:
    """n cameras on a ring around `target`, all looking at it."""
    target = np.asarray(target, dtype=np.float64)
    out = []
    for i in range(n):
        a = 2 * np.pi * i / n
        eye = target + np.array([radius * np.cos(a), radius * np.sin(a), height + 0.2 * (i % 3)])
        out.append(look_at(eye, target))
    return out


def nerf_folder(root: Path, n: int = 6, size=(16, 12), angle_x: float = 0.69, rgba: bool = True) -> dict:
    """A NeRF-synthetic style folder with transforms_{train,val,test}.json, no extensions in paths."""
    poses = {"train": ring(n), "val": ring(2, 5.0), "test": ring(3, 4.5)}
    for split, cams in poses.items():
        frames = []
        for i, c2w in enumerate(cams):
            write_png(root / split / f"r_{i}.png", pattern(*size, seed=i, channels=4 if rgba else 3))
            frames.append({"file_path": f"./{split}/r_{i}", "rotation": 0.0, "transform_matrix": c2w.tolist()})
        write_json(root / f"transforms_{split}.json", {"camera_angle_x": angle_x, "frames": frames})
    return poses


def c2w_to_colmap(c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenGL camera-to-world -> COLMAP (qvec wxyz, tvec) world-to-camera with OpenCV axes."""
    cv = c2w.copy()
    cv[:3, 1:3] *= -1
    R = cv[:3, :3].T
    t = -R @ cv[:3, 3]
    x, y, z, w = Rotation.from_matrix(R).as_quat()
    return np.array([w, x, y, z]), t


def write_colmap(folder: Path, cameras: list, images: list, points: np.ndarray | None, binary: bool) -> Path:
    """cameras: (id, model, w, h, params); images: (id, c2w, camera_id, name)."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = _write_bin if binary else _write_txt
    writer(folder, cameras, images, points)
    return folder


def _write_txt(folder: Path, cameras: list, images: list, points: np.ndarray | None) -> None:
    lines = ["# Camera list with one line of data per camera:"]
    lines += [" ".join(map(str, [cid, model, w, h, *params])) for cid, model, w, h, params in cameras]
    (folder / "cameras.txt").write_text("\n".join(lines) + "\n")
    lines = ["# Image list with two lines of data per image:", "#   POINTS2D[] as (X, Y, POINT3D_ID)"]
    for iid, c2w, cid, name in images:
        q, t = c2w_to_colmap(c2w)
        lines.append(" ".join(map(repr, [iid, *q.tolist(), *t.tolist(), cid])) + f" {name}")
        lines.append("1.5 2.5 -1" if iid % 2 else "")
    (folder / "images.txt").write_text("\n".join(lines) + "\n")
    if points is not None:
        lines = ["# 3D point list"]
        lines += [f"{i + 1} {x!r} {y!r} {z!r} 10 20 30 0.5 1 0 2 1" for i, (x, y, z) in enumerate(points.tolist())]
        (folder / "points3D.txt").write_text("\n".join(lines) + "\n")


def _write_bin(folder: Path, cameras: list, images: list, points: np.ndarray | None) -> None:
    data = struct.pack("<Q", len(cameras))
    for cid, model, w, h, params in cameras:
        data += struct.pack("<iiQQ", cid, COLMAP_MODEL_IDS[model], w, h) + struct.pack(f"<{len(params)}d", *params)
    (folder / "cameras.bin").write_bytes(data)
    data = struct.pack("<Q", len(images))
    for iid, c2w, cid, name in images:
        q, t = c2w_to_colmap(c2w)
        data += struct.pack("<i7di", iid, *q, *t, cid) + name.encode() + b"\0"
        data += struct.pack("<Q", 2) + struct.pack("<ddq", 1.0, 2.0, -1) + struct.pack("<ddq", 3.0, 4.0, 1)
    (folder / "images.bin").write_bytes(data)
    if points is not None:
        data = struct.pack("<Q", len(points))
        for i, p in enumerate(points):
            data += struct.pack("<Q3d3BdQ", i + 1, *p, 10, 20, 30, 0.5, 2) + struct.pack("<iiii", 1, 0, 2, 1)
        (folder / "points3D.bin").write_bytes(data)


def colmap_scene(root: Path, *, binary: bool, n: int = 8, size=(16, 12), model="PINHOLE", params=None,
                 points: bool = True, sub: str = "sparse/0", seed: int = 0) -> dict:
    """A COLMAP workspace (images/ + model under `sub`) in a random SfM frame.

    Returns the cameras in the 'true' frame and the raw SfM frame, plus the similarity between them.
    """
    rng = np.random.default_rng(seed)
    true = ring(n, radius=4.0, height=1.5)
    R = Rotation.random(random_state=seed).as_matrix()
    s, t = 0.37, rng.normal(size=3) * 3
    sim = np.eye(4)
    sim[:3, :3], sim[:3, 3] = s * R, t
    raw = []
    for c2w in true:
        m = sim @ c2w
        m[:3, :3] /= s
        raw.append(m)
    w, h = size
    params = params if params is not None else [20.0, 21.0, w / 2, h / 2]
    names = [f"img_{i:02d}.png" for i in range(n)]
    for i, name in enumerate(names):
        write_png(root / "images" / name, pattern(w, h, seed=i))
    true_points = rng.normal(size=(50, 3)) * 0.3
    raw_points = (sim[:3, :3] @ true_points.T).T + sim[:3, 3]
    images = [(i + 10, c2w, 1, name) for i, (c2w, name) in enumerate(zip(raw, names))][::-1]
    write_colmap(root / sub, [(1, model, w, h, params)], images, raw_points if points else None, binary)
    return {"true": true, "raw": raw, "sim": sim, "names": names, "points_true": true_points}
