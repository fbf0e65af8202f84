"""Loader for COLMAP sparse models (text or binary `cameras`, `images`, `points3D`).

COLMAP stores world-to-camera poses in the OpenCV camera convention in an arbitrary SfM frame
(random orientation, centre and scale). We convert them to camera-to-world OpenGL poses and then
normalise the frame like NeRF-synthetic: the mean camera up vector becomes +Z, the (geometric) median
of the 3D points (or the cameras' common look-at point) becomes the origin, and the cameras' median distance
to it becomes 4. The similarity applied is kept in `Capture.extras["colmap_to_capture"]` so the
exporter can record the way back to the raw SfM frame.

Binary layout (little endian), from COLMAP's "Output format" documentation:
  cameras.bin   u64 n; n x (i32 camera_id, i32 model_id, u64 width, u64 height, f64 params[k])
  images.bin    u64 n; n x (i32 image_id, f64 qw qx qy qz, f64 tx ty tz, i32 camera_id,
                            name\\0, u64 m, m x (f64 x, f64 y, i64 point3D_id))
  points3D.bin  u64 n; n x (u64 point3D_id, f64 xyz[3], u8 rgb[3], f64 error, u64 t,
                            t x (i32 image_id, i32 point2D_idx))
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..export.frames import quaternion_to_rotation
from ..errors import CaptureError
from .images import DistortedFrame, assign_test_split, probe_image, resolve_inside
from .model import Capture, Frame
from .similarity import apply_similarity, geometric_median, look_at_point, rotation_to_z
from .undistort import Distortion

# model_id -> (name, number of parameters); ids above 11 are unknown to us and refused.
CAMERA_MODELS: dict[int, tuple[str, int]] = {
    0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5),
    4: ("OPENCV", 8), 5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12), 7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4), 9: ("RADIAL_FISHEYE", 5), 10: ("THIN_PRISM_FISHEYE", 12),
    11: ("RAD_TAN_THIN_PRISM_FISHEYE", 16),
}
PARAM_COUNT = {name: count for name, count in CAMERA_MODELS.values()}
MODEL_SUBDIRS = (".", "sparse/0", "sparse", "colmap/sparse/0")
TARGET_DISTANCE = 4.0  # median camera distance to the centre after normalisation (NeRF-synthetic)


@dataclass
class ColmapCamera:
    camera_id: int
    model: str
    width: int
    height: int
    params: tuple[float, ...]


@dataclass
class ColmapImage:
    image_id: int
    qvec: np.ndarray  # (4,) w, x, y, z: world-to-camera rotation
    tvec: np.ndarray  # (3,) world-to-camera translation
    camera_id: int
    name: str


@dataclass
class ColmapModel:
    folder: Path
    cameras_file: Path
    images_file: Path
    cameras: dict[int, ColmapCamera]
    images: list[ColmapImage]
    points: np.ndarray  # (N, 3) float64, empty when the model has no points3D file


def find_model_dir(folder: Path) -> Path | None:
    """The folder holding `cameras` + `images` (.bin or .txt) under the usual layouts, or None."""
    for sub in MODEL_SUBDIRS:
        candidate = folder / sub
        if _model_ext(candidate) is not None:
            return candidate.absolute()
    return None


def _model_ext(folder: Path) -> str | None:
    """".bin" or ".txt" (COLMAP itself prefers binary when both are present)."""
    for ext in (".bin", ".txt"):
        if (folder / f"cameras{ext}").is_file() and (folder / f"images{ext}").is_file():
            return ext
    return None


def find_images_dir(model_dir: Path) -> Path | None:
    """`images/` next to the model or next to one of its parents (`sparse/0` -> `../../images`)."""
    model_dir = model_dir.absolute()
    for base in [model_dir, *list(model_dir.parents)[:3]]:
        if (base / "images").is_dir():
            return base / "images"
    return None


def load_colmap(path: Path, *, test_every: int = 8) -> Capture:
    """Load a COLMAP model folder (or a project folder with `sparse/0`) into a normalised Capture."""
    model_dir = find_model_dir(Path(os.path.abspath(path)))
    if model_dir is None:
        raise CaptureError("no COLMAP model (cameras/images .bin or .txt) found", path=str(path))
    images_dir = find_images_dir(model_dir)
    if images_dir is None:
        raise CaptureError(
            "COLMAP model found but no images/ folder next to it", path=str(model_dir),
            hint="put the photos in images/ beside sparse/ (COLMAP's workspace layout)",
        )
    model = read_model(model_dir)
    frames, distortion = _frames(model, images_dir)
    transform = normalising_transform(np.stack([f.c2w for f in frames]), model.points)
    for frame in frames:
        frame.c2w = apply_similarity(transform, frame.c2w)
    extras: dict = {"colmap_to_capture": transform.tolist(), "colmap_model": str(model_dir)}
    if distortion:
        extras["distortion"] = distortion
    return Capture(
        frames=assign_test_split(frames, test_every), source="colmap",
        root=images_dir.parent, up_axis="z", extras=extras,
    )


def read_model(folder: Path) -> ColmapModel:
    """Parse cameras, images and (if present) points3D in the format found in `folder`."""
    ext = _model_ext(folder)
    if ext is None:
        raise CaptureError("not a COLMAP model folder", path=str(folder))
    binary = ext == ".bin"
    cams_file, imgs_file, pts_file = (folder / f"{n}{ext}" for n in ("cameras", "images", "points3D"))
    cameras = _read_cameras_bin(cams_file) if binary else _read_cameras_txt(cams_file)
    images = _read_images_bin(imgs_file) if binary else _read_images_txt(imgs_file)
    if not pts_file.is_file():
        points = np.zeros((0, 3))
    else:
        points = _read_points_bin(pts_file) if binary else _read_points_txt(pts_file)
    if not images:
        raise CaptureError("the model has no registered images", path=str(imgs_file))
    return ColmapModel(folder, cams_file, imgs_file, cameras, images, points)


class _Bin:
    """Cursor over a little-endian binary file whose every failure names the file."""

    def __init__(self, path: Path):
        self.path = path
        self.data = path.read_bytes()
        self.pos = 0

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        self.skip(size)
        return struct.unpack_from(fmt, self.data, self.pos - size)

    def skip(self, size: int) -> None:
        if self.pos + size > len(self.data):
            raise self.error(f"truncated at byte {self.pos} (needed {size} more bytes)")
        self.pos += size

    def cstring(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise self.error(f"truncated at byte {self.pos} (unterminated image name)")
        raw, self.pos = self.data[self.pos:end], end + 1
        return raw.decode("utf-8", errors="replace")

    def count(self, min_record: int, what: str) -> int:
        """The leading record count, rejected early when the file cannot possibly hold it."""
        (n,) = self.take("<Q")
        if n * min_record > len(self.data) - self.pos:
            raise self.error(f"header says {n} {what} but only {len(self.data) - self.pos} bytes follow")
        return n

    def finish(self, n: int, what: str) -> None:
        if self.pos != len(self.data):
            raise self.error(f"{len(self.data) - self.pos} unexpected bytes after the {n} {what} the header counts")

    def error(self, message: str) -> CaptureError:
        return CaptureError(f"malformed COLMAP binary: {message}", path=str(self.path))


def _read_cameras_bin(path: Path) -> dict[int, ColmapCamera]:
    f = _Bin(path)
    n = f.count(24, "cameras")
    cameras = {}
    for _ in range(n):
        camera_id, model_id, width, height = f.take("<iiQQ")
        if model_id not in CAMERA_MODELS:
            raise f.error(f"camera {camera_id}: unknown camera model id {model_id}")
        name, count = CAMERA_MODELS[model_id]
        cameras[camera_id] = ColmapCamera(camera_id, name, width, height, f.take(f"<{count}d"))
    f.finish(n, "cameras")
    return cameras


def _read_images_bin(path: Path) -> list[ColmapImage]:
    f = _Bin(path)
    n = f.count(73, "images")
    images = []
    for _ in range(n):
        image_id, *pose, camera_id = f.take("<i7di")
        name = f.cstring()
        (num_points,) = f.take("<Q")
        f.skip(24 * num_points)
        images.append(ColmapImage(image_id, np.array(pose[:4]), np.array(pose[4:]), camera_id, name))
    f.finish(n, "images")
    return images


def _read_points_bin(path: Path) -> np.ndarray:
    f = _Bin(path)
    n = f.count(51, "points")
    points = np.empty((n, 3))
    for i in range(n):
        _, x, y, z, _, _, _, _, track = f.take("<Q3d3BdQ")
        f.skip(8 * track)
        points[i] = (x, y, z)
    f.finish(n, "points")
    return points


def _text_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise CaptureError(f"cannot read file: {exc.strerror or exc}", path=str(path)) from exc


def _parse(path: Path, lineno: int, convert, tokens: list[str], what: str) -> list:
    """Convert tokens, turning a ValueError into a CaptureError naming the file and line."""
    try:
        return [convert(t) for t in tokens]
    except ValueError:
        raise CaptureError(f"line {lineno}: malformed {what}: {' '.join(tokens)[:80]!r}", path=str(path)) from None


def _read_cameras_txt(path: Path) -> dict[int, ColmapCamera]:
    cameras = {}
    for lineno, line in enumerate(_text_lines(path), 1):
        tokens = line.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        if len(tokens) < 5:
            raise CaptureError(f"line {lineno}: expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]", path=str(path))
        camera_id, width, height = _parse(path, lineno, int, [tokens[0], tokens[2], tokens[3]], "camera")
        params = tuple(_parse(path, lineno, float, tokens[4:], "camera parameters"))
        model = tokens[1].upper()
        if model in PARAM_COUNT and PARAM_COUNT[model] != len(params):
            raise CaptureError(
                f"line {lineno}: camera {camera_id} model {model} needs {PARAM_COUNT[model]} parameters, "
                f"got {len(params)}", path=str(path),
            )
        cameras[camera_id] = ColmapCamera(camera_id, model, width, height, params)
    return cameras


def _read_images_txt(path: Path) -> list[ColmapImage]:
    """Two lines per image: the pose line, then the (possibly empty) POINTS2D line."""
    lines, images, i = _text_lines(path), [], 0
    while i < len(lines):
        tokens = lines[i].split(maxsplit=9)
        i += 1
        if not tokens or tokens[0].startswith("#"):
            continue
        if len(tokens) < 10:
            raise CaptureError(f"line {i}: expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME", path=str(path))
        image_id, camera_id = _parse(path, i, int, [tokens[0], tokens[8]], "image")
        pose = _parse(path, i, float, tokens[1:8], "image pose")
        if i < len(lines) and len(lines[i].split()) % 3 != 0:
            raise CaptureError(f"line {i + 1}: expected POINTS2D[] as (X, Y, POINT3D_ID) triples", path=str(path))
        i += 1
        images.append(ColmapImage(image_id, np.array(pose[:4]), np.array(pose[4:]), camera_id, tokens[9].strip()))
    return images


def _read_points_txt(path: Path) -> np.ndarray:
    points = []
    for lineno, line in enumerate(_text_lines(path), 1):
        tokens = line.split(maxsplit=8)
        if not tokens or tokens[0].startswith("#"):
            continue
        if len(tokens) < 8:
            raise CaptureError(f"line {lineno}: expected POINT3D_ID X Y Z R G B ERROR TRACK[]", path=str(path))
        points.append(_parse(path, lineno, float, tokens[1:4], "point"))
    return np.array(points, dtype=np.float64).reshape(-1, 3)


def pinhole_of(camera: ColmapCamera, source: Path) -> tuple[float, float, float, float, Distortion | None]:
    """fx, fy, cx, cy and lens distortion of the perspective models we can undistort."""
    p, model = camera.params, camera.model
    if model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
        fx = fy = p[0]
        cx, cy = p[1], p[2]
        d = Distortion(k1=p[3] if len(p) > 3 else 0.0, k2=p[4] if len(p) > 4 else 0.0)
    elif model in ("PINHOLE", "OPENCV", "FULL_OPENCV"):
        fx, fy, cx, cy = p[:4]
        k = list(p[4:]) + [0.0] * (8 - len(p[4:]))
        d = Distortion(k1=k[0], k2=k[1], p1=k[2], p2=k[3], k3=k[4], k4=k[5], k5=k[6], k6=k[7])
    else:
        raise CaptureError(
            f"camera {camera.camera_id}: camera model {model} is not supported",
            path=str(source),
            hint="use a perspective model (PINHOLE, SIMPLE_RADIAL, RADIAL, OPENCV, FULL_OPENCV), "
            "or undistort with `colmap image_undistorter` first",
        )
    if not np.isfinite([fx, fy, cx, cy]).all() or fx <= 0 or fy <= 0:
        raise CaptureError(f"camera {camera.camera_id}: focal length must be positive and finite", path=str(source))
    return fx, fy, cx, cy, None if d.is_identity() else d


def qvec_to_rotmat(q: np.ndarray) -> np.ndarray:
    """Rotation matrix of COLMAP's Hamilton quaternion (w, x, y, z), normalised first."""
    w, x, y, z = np.asarray(q, dtype=np.float64)
    return quaternion_to_rotation(np.array([x, y, z, w]))


def opengl_c2w(qvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    """COLMAP's world-to-camera (OpenCV axes) as camera-to-world with OpenGL axes (Y, Z flipped)."""
    R = qvec_to_rotmat(qvec)
    c2w = np.eye(4)
    c2w[:3, :3] = R.T
    c2w[:3, 3] = -R.T @ np.asarray(tvec, dtype=np.float64)
    c2w[:3, 1:3] *= -1.0
    return c2w


def _frames(model: ColmapModel, images_dir: Path) -> tuple[list[Frame], dict[str, dict[str, float]]]:
    """Frames in the raw SfM frame, their distortion table; every image is checked on disk."""
    frames, distortion = [], {}
    for im in model.images:
        camera = model.cameras.get(im.camera_id)
        if camera is None:
            raise CaptureError(f"image {im.image_id} ({im.name!r}) uses unknown camera {im.camera_id}",
                               path=str(model.images_file))
        if np.linalg.norm(im.qvec) < 1e-12 or not np.isfinite(np.r_[im.qvec, im.tvec]).all():
            raise CaptureError(f"image {im.image_id} ({im.name!r}): invalid pose", path=str(model.images_file))
        fx, fy, cx, cy, d = pinhole_of(camera, model.cameras_file)
        path = _image_file(model, im, images_dir, camera)
        pose = opengl_c2w(im.qvec, im.tvec)
        if d is None:
            frames.append(Frame(path, pose, fx, fy, cx, cy, camera.width, camera.height))
        else:
            frames.append(DistortedFrame(path, pose, fx, fy, cx, cy, camera.width, camera.height, distortion=d))
            distortion[str(path)] = d.to_dict()
    return frames, distortion


def _image_file(model: ColmapModel, im: ColmapImage, images_dir: Path, camera: ColmapCamera) -> Path:
    """The photo of an image record: inside images/, readable, and the size its camera says."""
    field = f"image {im.image_id} name"
    path = resolve_inside(images_dir, im.name, source=model.images_file, field=field)
    if not path.is_file():
        raise CaptureError(f"{field}: photo {im.name!r} not found in {images_dir}", path=str(model.images_file))
    size = probe_image(path, f"{model.images_file.name} {field}")
    if size != (camera.width, camera.height):
        raise CaptureError(
            f"image is {size[0]}x{size[1]} but camera {camera.camera_id} in {model.cameras_file.name} "
            f"says {camera.width}x{camera.height}", path=str(path),
            hint="the images/ folder must hold the photos the model was built from, at full size",
        )
    return path


def normalising_transform(c2ws: np.ndarray, points: np.ndarray) -> np.ndarray:
    """4x4 similarity x -> s R (x - c): up to +Z, robust centre to 0, median camera distance to 4."""
    up = c2ws[:, :3, 1].mean(0)
    R = rotation_to_z(up / np.linalg.norm(up)) if np.linalg.norm(up) > 1e-9 else np.eye(3)
    finite = points[np.isfinite(points).all(1)] if len(points) else points
    centre = geometric_median(finite) if len(finite) else look_at_point(c2ws)
    distance = float(np.median(np.linalg.norm(c2ws[:, :3, 3] - centre, axis=1)))
    scale = TARGET_DISTANCE / distance if distance > 1e-12 else 1.0
    T = np.eye(4)
    T[:3, :3] = scale * R
    T[:3, 3] = -scale * R @ centre
    return T
