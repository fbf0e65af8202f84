"""Loader for nerfstudio / instant-ngp / NeRF-synthetic `transforms.json` captures.

The poses are kept exactly as written: camera-to-world, OpenGL camera axes, in the file's own world
frame (Z-up for Blender, nerfstudio and colmap2nerf), so the ground-truth mesh of a synthetic
capture and the cameras stay in one frame. Intrinsics may be global or per frame (a frame's key
wins); focal lengths come from `fl_x`/`fl_y` or `camera_angle_x`/`camera_angle_y`, image sizes
from `w`/`h` or, when missing, from the image header.

Splits: `transforms_train.json` + `transforms_test.json` (`transforms_val.json` is ignored), or
nerfstudio's `train_filenames`/`test_filenames` lists (`val_filenames` frames are dropped);
otherwise every `test_every`-th frame is held out for testing.

An optional top-level `"nrconvert": {"gt_mesh": "gt_mesh.ply", "up_axis": "z", "bounds": [[..],
[..]]}` object (written by our synthetic-capture generator) is kept in `Capture.extras["nrconvert"]`.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CaptureError
from .images import DistortedFrame, assign_test_split, find_image_file, probe_image, resolve_inside
from .model import Capture, Frame
from .undistort import Distortion

SPLIT_FILES = {"transforms_train.json": "train", "transforms_test.json": "test"}
PERSPECTIVE_MODELS = {"OPENCV", "PINHOLE", "SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "PERSPECTIVE"}
DISTORTION_KEYS = ("k1", "k2", "k3", "p1", "p2")
FOCAL_HINT = "give fl_x (pixels) or camera_angle_x (radians), globally or per frame"


def transforms_files(folder: Path) -> list[tuple[Path, str | None]]:
    """The transforms files of a folder with the split each one imposes ([] if none).

    Explicit train/test files win over a plain `transforms.json` because they carry the held-out
    views the quality protocol evaluates on.
    """
    train = folder / "transforms_train.json"
    if train.is_file():
        test = folder / "transforms_test.json"
        return [(train, "train")] + ([(test, "test")] if test.is_file() else [])
    single = folder / "transforms.json"
    return [(single, None)] if single.is_file() else []


def load_transforms(path: Path, *, test_every: int = 8) -> Capture:
    """Load a transforms file, or a folder holding transforms.json / transforms_{train,test}.json."""
    path = Path(os.path.abspath(path))
    if path.is_dir():
        files = transforms_files(path)
        if not files:
            raise CaptureError("no transforms.json or transforms_train.json in this folder", path=str(path))
    elif path.name in SPLIT_FILES and (path.parent / "transforms_train.json").is_file():
        files = transforms_files(path.parent)
    else:
        files = [(path, None)]
    return _load_files(files, test_every)


def _load_files(files: list[tuple[Path, str | None]], test_every: int) -> Capture:
    """Merge the frames of every file, then apply the split and build the Capture."""
    frames: list[Frame] = []
    tables: dict[str, dict[str, dict[str, Any]]] = {"distortion": {}, "frame_extras": {}}
    meta: tuple[dict[str, Any], Path] | None = None
    explicit = False
    for file, split in files:
        doc = read_json(file)
        file_frames, has_split = _frames_of(doc, file, split, tables)
        frames += file_frames
        explicit = explicit or has_split
        if meta is None and doc.get("nrconvert") is not None:
            meta = (_nrconvert_meta(doc, file), file)
    if not explicit:
        frames = assign_test_split(frames, test_every)
    main = files[0][0]
    if not any(f.split == "train" for f in frames):
        raise CaptureError("no training frames (every frame is in the test split)", path=str(main))
    return _capture(frames, main, tables, meta, [str(f) for f, _ in files])


def _capture(
    frames: list[Frame],
    main: Path,
    tables: dict[str, dict[str, dict[str, Any]]],
    meta: tuple[dict[str, Any], Path] | None,
    sources: list[str],
) -> Capture:
    """Assemble the Capture; the nrconvert object may set the GT mesh, up axis and bounds."""
    extras: dict[str, Any] = {"transforms_files": sources}
    extras.update({name: table for name, table in tables.items() if table})
    capture = Capture(frames=frames, source="transforms", root=main.parent, extras=extras)
    if meta is not None:
        extras["nrconvert"] = meta[0]
        _apply_meta(capture, *meta)
    return capture


def read_json(path: Path) -> dict[str, Any]:
    """Parse a JSON object, reporting syntax errors with their line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CaptureError(f"cannot read file: {exc.strerror or exc}", path=str(path)) from exc
    except UnicodeDecodeError as exc:
        raise CaptureError(f"not UTF-8 text (byte {exc.start})", path=str(path)) from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CaptureError(
            f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", path=str(path)
        ) from exc
    if not isinstance(doc, dict):
        raise CaptureError(f"expected a JSON object at the top level, got {type(doc).__name__}", path=str(path))
    return doc


def _frames_of(
    doc: dict[str, Any], file: Path, split: str | None, tables: dict[str, dict[str, dict[str, Any]]]
) -> tuple[list[Frame], bool]:
    """Frames of one file and whether the file fixed their split; fills the per-image tables.

    `tables["distortion"]` gets the lens coefficients and `tables["frame_extras"]` the frame's
    `nrconvert_*` keys (e.g. the synthetic generator's `nrconvert_eval_mask`, a path relative to
    the capture root), both keyed by `str(frame.image_path)`.
    """
    entries = doc.get("frames")
    if entries is None:
        raise CaptureError("frames: missing (a transforms file needs a list of frames)", path=str(file))
    if not isinstance(entries, list) or not entries:
        raise CaptureError("frames: expected a non-empty list of frames", path=str(file))
    named = _named_splits(doc, file)
    frames = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise CaptureError(f"frames[{i}]: expected an object", path=str(file))
        frame, dist = _frame(doc, entry, i, file)
        frame.split = split or named.get(str(frame.image_path), "train" if named else "")
        if frame.split == "val":
            continue
        if dist is not None:
            tables["distortion"][str(frame.image_path)] = dist.to_dict()
        ours = {k: v for k, v in entry.items() if k.startswith("nrconvert_")}
        if ours:
            tables["frame_extras"][str(frame.image_path)] = ours
        frames.append(frame)
    return frames, bool(split or named)


def _named_splits(doc: dict[str, Any], file: Path) -> dict[str, str]:
    """nerfstudio's explicit `train_filenames` / `val_filenames` / `test_filenames` lists."""
    table: dict[str, str] = {}
    for key, split in (("val_filenames", "val"), ("train_filenames", "train"), ("test_filenames", "test")):
        names = doc.get(key)
        if names is None:
            continue
        if not isinstance(names, list):
            raise CaptureError(f"{key}: expected a list of file paths", path=str(file))
        for j, name in enumerate(names):
            table[str(resolve_inside(file.parent, name, source=file, field=f"{key}[{j}]"))] = split
    return table


def _lookup(doc: dict[str, Any], entry: dict[str, Any], key: str, i: int) -> tuple[Any, str]:
    """A per-frame value if present, else the global one, with the field name for messages."""
    if key in entry:
        return entry[key], f"frames[{i}].{key}"
    return doc.get(key), key


def _number(value: Any, field: str, file: Path) -> float:
    """A finite JSON number (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CaptureError(f"{field}: expected a finite number, got {value!r}", path=str(file))
    return float(value)


def _frame(doc: dict[str, Any], entry: dict[str, Any], i: int, file: Path) -> tuple[Frame, Distortion | None]:
    """One Frame (split left empty) and its lens distortion, validated field by field."""
    image = _image_path(entry, i, file)
    width, height = probe_image(image, f"{file.name} frames[{i}].file_path")
    _check_declared_size(doc, entry, i, file, (width, height))
    fx, fy, cx, cy = _intrinsics(doc, entry, i, file, width, height)
    c2w = _matrix(entry, i, file)
    mask = _mask_path(entry, i, file, (width, height))
    d = _distortion(doc, entry, i, file)
    if d is None:
        return Frame(image, c2w, fx, fy, cx, cy, width, height, "", mask), None
    return DistortedFrame(image, c2w, fx, fy, cx, cy, width, height, "", mask, distortion=d), d


def _image_path(entry: dict[str, Any], i: int, file: Path) -> Path:
    """Resolve `file_path` inside the capture folder, trying image extensions when it has none."""
    if "file_path" not in entry:
        raise CaptureError(f"frames[{i}].file_path: missing", path=str(file))
    field = f"frames[{i}].file_path"
    wanted = resolve_inside(file.parent, entry["file_path"], source=file, field=field)
    found = find_image_file(wanted)
    if found is None:
        raise CaptureError(
            f"{field}: image {entry['file_path']!r} not found (looked for {wanted}, also with .png/.jpg/... appended)",
            path=str(file),
        )
    return found


def _mask_path(entry: dict[str, Any], i: int, file: Path, size: tuple[int, int]) -> Path | None:
    """The optional per-frame mask; it must exist and match the image size."""
    if entry.get("mask_path") is None:
        return None
    field = f"frames[{i}].mask_path"
    found = find_image_file(resolve_inside(file.parent, entry["mask_path"], source=file, field=field))
    if found is None:
        raise CaptureError(f"{field}: mask {entry['mask_path']!r} not found", path=str(file))
    mask_size = probe_image(found, f"{file.name} {field}")
    if mask_size != size:
        raise CaptureError(
            f"{field}: mask is {mask_size[0]}x{mask_size[1]} but the image is {size[0]}x{size[1]}", path=str(file)
        )
    return found


def _check_declared_size(
    doc: dict[str, Any], entry: dict[str, Any], i: int, file: Path, size: tuple[int, int]
) -> None:
    """`w`/`h`, when given, must agree with the actual image (else the intrinsics are for another size)."""
    for key, actual in (("w", size[0]), ("h", size[1])):
        value, field = _lookup(doc, entry, key, i)
        if value is None:
            continue
        declared = _number(value, field, file)
        if declared != actual:
            raise CaptureError(
                f"{field}: says {declared:g} but frames[{i}] image {entry['file_path']!r} is "
                f"{size[0]}x{size[1]}",
                path=str(file),
                hint="w/h must describe the images on disk (were they resized after calibration?)",
            )


def _focal(doc: dict[str, Any], entry: dict[str, Any], i: int, file: Path, axis: str, extent: int) -> float | None:
    """Focal length along one axis from fl_<axis> or camera_angle_<axis>, None when neither is set."""
    value, field = _lookup(doc, entry, f"fl_{axis}", i)
    if value is not None:
        focal = _number(value, field, file)
        if focal <= 0:
            raise CaptureError(f"{field}: focal length must be positive, got {focal:g}", path=str(file))
        return focal
    value, field = _lookup(doc, entry, f"camera_angle_{axis}", i)
    if value is None:
        return None
    angle = _number(value, field, file)
    if not 0.0 < angle < math.pi:
        raise CaptureError(f"{field}: field of view must be in (0, pi) radians, got {angle:g}", path=str(file))
    return 0.5 * extent / math.tan(0.5 * angle)


def _intrinsics(
    doc: dict[str, Any], entry: dict[str, Any], i: int, file: Path, width: int, height: int
) -> tuple[float, float, float, float]:
    """fx, fy, cx, cy in pixels; fy defaults to fx and the principal point to the image centre."""
    fx = _focal(doc, entry, i, file, "x", width)
    if fx is None:
        raise CaptureError(
            f"frames[{i}]: missing focal length (no fl_x or camera_angle_x)", path=str(file), hint=FOCAL_HINT
        )
    fy = _focal(doc, entry, i, file, "y", height) or fx
    centre = []
    for key, default in (("cx", width / 2.0), ("cy", height / 2.0)):
        value, field = _lookup(doc, entry, key, i)
        centre.append(default if value is None else _number(value, field, file))
    return fx, fy, centre[0], centre[1]


def _matrix(entry: dict[str, Any], i: int, file: Path) -> np.ndarray:
    """The 4x4 camera-to-world matrix, checked for shape, finiteness and a rigid rotation."""
    field = f"frames[{i}].transform_matrix"
    value = entry.get("transform_matrix")
    if value is None:
        raise CaptureError(f"{field}: missing", path=str(file))
    ok = isinstance(value, list) and len(value) == 4
    ok = ok and all(isinstance(row, list) and len(row) == 4 for row in value)
    ok = ok and all(isinstance(x, (int, float)) and not isinstance(x, bool) for row in value for x in row)
    if not ok:
        raise CaptureError(f"{field}: expected a 4x4 list of numbers", path=str(file))
    m = np.array(value, dtype=np.float64)
    if not np.isfinite(m).all():
        raise CaptureError(f"{field}: contains NaN or infinite values", path=str(file))
    rot = m[:3, :3]
    if np.abs(rot.T @ rot - np.eye(3)).max() > 1e-2 or np.linalg.det(rot) < 0:
        raise CaptureError(
            f"{field}: the 3x3 block is not a rotation (scaled, sheared or mirrored camera)", path=str(file)
        )
    if np.abs(m[3] - [0, 0, 0, 1]).max() > 1e-6:
        raise CaptureError(f"{field}: the last row must be [0, 0, 0, 1]", path=str(file))
    return m


def _distortion(doc: dict[str, Any], entry: dict[str, Any], i: int, file: Path) -> Distortion | None:
    """Radial-tangential coefficients; fisheye and panoramic cameras are refused."""
    model, field = _lookup(doc, entry, "camera_model", i)
    if model is not None and str(model).upper() not in PERSPECTIVE_MODELS:
        raise CaptureError(
            f"{field}: camera model {model!r} is not supported (only pinhole/OPENCV perspective cameras)",
            path=str(file),
            hint="undistort the images to a pinhole camera first (e.g. COLMAP image_undistorter)",
        )
    fisheye, field = _lookup(doc, entry, "is_fisheye", i)
    if fisheye:
        raise CaptureError(f"{field}: fisheye cameras are not supported", path=str(file))
    k4, field = _lookup(doc, entry, "k4", i)
    if k4 is not None and _number(k4, field, file) != 0.0:
        raise CaptureError(f"{field}: a non-zero k4 (fisheye/high-order model) is not supported", path=str(file))
    values = {}
    for key in DISTORTION_KEYS:
        value, field = _lookup(doc, entry, key, i)
        values[key] = 0.0 if value is None else _number(value, field, file)
    d = Distortion(**values)
    return None if d.is_identity() else d


def _nrconvert_meta(doc: dict[str, Any], file: Path) -> dict[str, Any]:
    """The top-level `nrconvert` object, which must be a JSON object."""
    meta = doc["nrconvert"]
    if not isinstance(meta, dict):
        raise CaptureError("nrconvert: expected an object", path=str(file))
    return meta


def _apply_meta(capture: Capture, meta: dict[str, Any], source: Path) -> None:
    """Ground-truth mesh (relative to its JSON file), up axis and bounds of a synthetic capture."""
    if meta.get("gt_mesh") is not None:
        mesh = resolve_inside(source.parent, meta["gt_mesh"], source=source, field="nrconvert.gt_mesh")
        if not mesh.is_file():
            raise CaptureError(f"nrconvert.gt_mesh: file {meta['gt_mesh']!r} not found", path=str(source))
        capture.gt_mesh_path = mesh
    if meta.get("up_axis") is not None:
        if meta["up_axis"] not in ("y", "z"):
            raise CaptureError(f"nrconvert.up_axis: expected 'y' or 'z', got {meta['up_axis']!r}", path=str(source))
        capture.up_axis = meta["up_axis"]
    if meta.get("bounds") is not None:
        capture.bounds = _bounds(meta["bounds"], source)


def _bounds(value: Any, source: Path) -> np.ndarray:
    """[[xmin, ymin, zmin], [xmax, ymax, zmax]] with min <= max."""
    try:
        b = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        b = np.zeros(0)
    if b.shape != (2, 3) or not np.isfinite(b).all() or (b[0] > b[1]).any():
        raise CaptureError("nrconvert.bounds: expected [[xmin, ymin, zmin], [xmax, ymax, zmax]]", path=str(source))
    return b


def load_cameras(path: Path) -> list[Frame]:
    """Every frame of one transforms file, in file order, whatever split it declares (renderers
    pick cameras by index)."""
    return _load_files([(Path(os.path.abspath(path)), "train")], test_every=8).frames
