"""COLMAP sparse models (text and binary): poses, intrinsics, normalisation, layouts, errors."""
from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from nrconvert.capture.images import DistortedFrame, frame_distortion, load_frame_image
from nrconvert.capture.load import load_capture
from nrconvert.capture.undistort import Distortion
from nrconvert.errors import CaptureError

try:
    from capture_fixtures import colmap_scene, pattern, write_json, write_png
except ImportError:  # tests/ is a package
    from tests.capture_fixtures import colmap_scene, pattern, write_json, write_png


def by_name(frames):
    return {f.image_path.name: f for f in frames}


def similarity_apply(T: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    out = T @ c2w
    out[:3, :3] /= np.cbrt(np.linalg.det(T[:3, :3]))
    return out


def assert_same_relative_geometry(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    """Equal relative rotations and proportional pairwise distances: equal up to a similarity."""
    ratios = []
    for i in range(len(a)):
        for j in range(i + 1, len(a)):
            np.testing.assert_allclose(a[i][:3, :3].T @ a[j][:3, :3], b[i][:3, :3].T @ b[j][:3, :3], atol=1e-9)
            ratios.append(np.linalg.norm(a[i][:3, 3] - a[j][:3, 3]) / np.linalg.norm(b[i][:3, 3] - b[j][:3, 3]))
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-9)


@pytest.mark.parametrize("binary", [False, True])
def test_model_loads_and_normalises(tmp_path: Path, binary: bool) -> None:
    scene = colmap_scene(tmp_path, binary=binary, n=8)
    cap = load_capture(tmp_path, test_every=8)
    assert cap.source == "colmap" and cap.up_axis == "z" and cap.root == tmp_path.absolute()
    assert [f.image_path.name for f in cap.test] == ["img_00.png"] and len(cap.train) == 7
    frames = by_name(cap.frames)
    f = frames["img_03.png"]
    np.testing.assert_allclose(f.intrinsics(), [[20, 0, 8], [0, 21, 6], [0, 0, 1]])
    assert (f.width, f.height) == (16, 12) and "distortion" not in cap.extras
    T = np.array(cap.extras["colmap_to_capture"])
    c2ws = [frames[name].c2w for name in scene["names"]]
    for raw, got in zip(scene["raw"], c2ws):
        np.testing.assert_allclose(similarity_apply(T, raw), got, atol=1e-9)
        np.testing.assert_allclose(got[:3, :3].T @ got[:3, :3], np.eye(3), atol=1e-9)
    up = np.mean([c[:3, 1] for c in c2ws], axis=0)
    np.testing.assert_allclose(up / np.linalg.norm(up), [0, 0, 1], atol=1e-9)
    assert np.median([np.linalg.norm(c[:3, 3]) for c in c2ws]) == pytest.approx(4.0)
    raw_points = (scene["sim"][:3, :3] @ scene["points_true"].T).T + scene["sim"][:3, 3]
    moved = (T[:3, :3] @ raw_points.T).T + T[:3, 3]
    # The origin is the geometric median of the points: their unit directions from it cancel out.
    np.testing.assert_allclose((moved / np.linalg.norm(moved, axis=1, keepdims=True)).sum(0), 0, atol=1e-6)
    assert_same_relative_geometry(c2ws, scene["true"])
    rgb, alpha = load_frame_image(f)
    np.testing.assert_allclose(rgb, pattern(16, 12, seed=3) / 255, atol=1e-6)
    assert alpha is None


def test_text_and_binary_agree(tmp_path: Path) -> None:
    colmap_scene(tmp_path / "t", binary=False, seed=4)
    colmap_scene(tmp_path / "b", binary=True, seed=4)
    text, binary = load_capture(tmp_path / "t"), load_capture(tmp_path / "b")
    for a, b in zip(text.frames, binary.frames):
        assert a.image_path.name == b.image_path.name and a.split == b.split
        np.testing.assert_allclose(a.c2w, b.c2w, atol=1e-12)
    np.testing.assert_allclose(text.extras["colmap_to_capture"], binary.extras["colmap_to_capture"], atol=1e-12)


def test_same_cameras_as_transforms_json(tmp_path: Path) -> None:
    scene = colmap_scene(tmp_path, binary=True, n=6)
    frames = [{"file_path": f"images/{name}", "transform_matrix": c2w.tolist()}
              for name, c2w in zip(scene["names"], scene["true"])]
    write_json(tmp_path / "transforms.json", {"fl_x": 20.0, "fl_y": 21.0, "cx": 8.0, "cy": 6.0, "frames": frames})
    from_json = load_capture(tmp_path / "transforms.json")
    from_colmap = load_capture(tmp_path / "sparse" / "0")
    a, b = by_name(from_json.frames), by_name(from_colmap.frames)
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_allclose(a[name].intrinsics(), b[name].intrinsics())
        assert a[name].split == b[name].split
    assert_same_relative_geometry([a[n].c2w for n in scene["names"]], [b[n].c2w for n in scene["names"]])


MODELS = {
    "SIMPLE_PINHOLE": ([20.0, 8.0, 6.0], (20, 20), Distortion()),
    "SIMPLE_RADIAL": ([20.0, 8.0, 6.0, -0.1], (20, 20), Distortion(k1=-0.1)),
    "RADIAL": ([20.0, 8.0, 6.0, -0.1, 0.02], (20, 20), Distortion(k1=-0.1, k2=0.02)),
    "OPENCV": ([20.0, 21.0, 8.0, 6.0, -0.1, 0.02, 0.001, 0.002], (20, 21),
               Distortion(k1=-0.1, k2=0.02, p1=0.001, p2=0.002)),
    "FULL_OPENCV": ([20.0, 21.0, 8.0, 6.0, -0.1, 0.02, 0.001, 0.002, 0.003, 0.01, 0.02, 0.03], (20, 21),
                    Distortion(k1=-0.1, k2=0.02, p1=0.001, p2=0.002, k3=0.003, k4=0.01, k5=0.02, k6=0.03)),
}


@pytest.mark.parametrize("model", sorted(MODELS))
def test_camera_models(tmp_path: Path, model: str) -> None:
    params, (fx, fy), distortion = MODELS[model]
    colmap_scene(tmp_path, binary=model in ("RADIAL", "FULL_OPENCV"), n=3, model=model, params=params)
    cap = load_capture(tmp_path)
    frame = cap.frames[0]
    assert (frame.fx, frame.fy, frame.cx, frame.cy) == (fx, fy, 8.0, 6.0)
    expected = None if distortion.is_identity() else distortion
    assert frame_distortion(frame) == expected
    assert isinstance(frame, DistortedFrame) == (expected is not None)
    if expected is not None:
        assert cap.extras["distortion"][str(frame.image_path)] == expected.to_dict()
    rgb, _ = load_frame_image(frame)
    assert rgb.shape == (12, 16, 3)


def test_unsupported_camera_model(tmp_path: Path) -> None:
    colmap_scene(tmp_path, binary=False, n=3, model="OPENCV_FISHEYE", params=[20, 20, 8, 6, 0.1, 0, 0, 0])
    with pytest.raises(CaptureError) as info:
        load_capture(tmp_path)
    message = str(info.value)
    assert "camera 1" in message and "OPENCV_FISHEYE" in message and "cameras.txt" in message


def test_no_points_uses_look_at_centre(tmp_path: Path) -> None:
    colmap_scene(tmp_path, binary=True, n=6, points=False)
    cap = load_capture(tmp_path)
    for f in cap.frames:
        origin, forward = f.c2w[:3, 3], -f.c2w[:3, 2]
        miss = np.linalg.norm(np.cross(forward, -origin))  # distance of the world origin to the axis
        assert miss < 1e-6
    assert np.median([np.linalg.norm(f.c2w[:3, 3]) for f in cap.frames]) == pytest.approx(4.0)


@pytest.mark.parametrize("sub", [".", "sparse", "colmap/sparse/0"])
def test_layouts(tmp_path: Path, sub: str) -> None:
    colmap_scene(tmp_path, binary=True, n=3, sub=sub)
    assert len(load_capture(tmp_path).frames) == 3
    assert len(load_capture(tmp_path / sub / "cameras.bin").frames) == 3
    assert len(load_capture(tmp_path / sub).frames) == 3


# ---- malformed models -------------------------------------------------------------------------


def corrupt_bin(name: str, edit):
    def apply(model: Path) -> Path:
        path = model / name
        path.write_bytes(edit(path.read_bytes()))
        return path
    return apply


def edit_txt(name: str, edit):
    def apply(model: Path) -> Path:
        path = model / name
        lines = path.read_text().splitlines()
        path.write_text("\n".join(edit(lines)) + "\n")
        return path
    return apply


def replace_line(index: int, text: str):
    return lambda lines: lines[:index] + [text] + lines[index + 1:]


BINARY_CASES = {
    "cameras truncated": (corrupt_bin("cameras.bin", lambda b: b[:-5]), "truncated"),
    "images count too big": (corrupt_bin("images.bin", lambda b: struct.pack("<Q", 1000) + b[8:]),
                             "header says 1000 images"),
    "images truncated": (corrupt_bin("images.bin", lambda b: b[:400]), "truncated"),
    "points trailing bytes": (corrupt_bin("points3D.bin", lambda b: b + b"\0" * 7), "7 unexpected bytes"),
    "points count too small": (corrupt_bin("points3D.bin", lambda b: struct.pack("<Q", 3) + b[8:]),
                               "unexpected bytes"),
    "unknown model id": (corrupt_bin("cameras.bin", lambda b: b[:12] + struct.pack("<i", 99) + b[16:]),
                         "camera 1: unknown camera model id 99"),
    "no images": (corrupt_bin("images.bin", lambda b: struct.pack("<Q", 0)), "no registered images"),
}

TEXT_CASES = {
    "wrong param count": (edit_txt("cameras.txt", replace_line(1, "1 PINHOLE 16 12 20 21 8")),
                          "line 2: camera 1 model PINHOLE needs 4 parameters, got 3"),
    "camera not numeric": (edit_txt("cameras.txt", replace_line(1, "1 PINHOLE 16 twelve 20 21 8 6")),
                           "line 2: malformed camera"),
    "short image line": (edit_txt("images.txt", replace_line(2, "10 1 0 0")), "line 3: expected IMAGE_ID"),
    "pose not numeric": (edit_txt("images.txt", replace_line(2, "10 1 0 0 x 0 0 0 1 a.png")),
                         "line 3: malformed image pose"),
    "unknown camera": (edit_txt("images.txt", lambda ls: [ls[0], ls[1], ls[2].rsplit(" ", 2)[0] + " 7 img_07.png",
                                                          *ls[3:]]), "uses unknown camera 7"),
    "missing points2D line": (edit_txt("images.txt", lambda ls: ls[:3] + ls[4:]), "POINTS2D"),
    "bad point": (edit_txt("points3D.txt", replace_line(1, "1 0.1 0.2")), "line 2: expected POINT3D_ID"),
    "zero quaternion": (edit_txt("images.txt", replace_line(2, "10 0 0 0 0 0 0 0 1 img_07.png")),
                        "image 10 ('img_07.png'): invalid pose"),
}


@pytest.mark.parametrize("case", sorted(BINARY_CASES))
def test_malformed_binary(tmp_path: Path, case: str) -> None:
    edit, text = BINARY_CASES[case]
    colmap_scene(tmp_path, binary=True, n=4)
    path = edit(tmp_path / "sparse" / "0")
    with pytest.raises(CaptureError) as info:
        load_capture(tmp_path)
    assert str(path) in str(info.value) and text in str(info.value)


@pytest.mark.parametrize("case", sorted(TEXT_CASES))
def test_malformed_text(tmp_path: Path, case: str) -> None:
    edit, text = TEXT_CASES[case]
    colmap_scene(tmp_path, binary=False, n=8)
    path = edit(tmp_path / "sparse" / "0")
    with pytest.raises(CaptureError) as info:
        load_capture(tmp_path)
    assert str(path) in str(info.value) and text in str(info.value)


def test_missing_photo(tmp_path: Path) -> None:
    colmap_scene(tmp_path, binary=True, n=4)
    (tmp_path / "images" / "img_02.png").unlink()
    with pytest.raises(CaptureError) as info:
        load_capture(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "sparse" / "0" / "images.bin") in message and "'img_02.png' not found" in message


def test_photo_size_disagrees_with_camera(tmp_path: Path) -> None:
    colmap_scene(tmp_path, binary=True, n=4)
    write_png(tmp_path / "images" / "img_01.png", pattern(32, 24))
    with pytest.raises(CaptureError, match="image is 32x24 but camera 1 in cameras.bin says 16x12") as info:
        load_capture(tmp_path)
    assert str(tmp_path / "images" / "img_01.png") in str(info.value)


def test_no_images_folder(tmp_path: Path) -> None:
    colmap_scene(tmp_path, binary=True, n=3)
    shutil.rmtree(tmp_path / "images")
    with pytest.raises(CaptureError, match="no images/ folder"):
        load_capture(tmp_path)


def test_image_name_escaping_images_folder(tmp_path: Path) -> None:
    colmap_scene(tmp_path, binary=False, n=3)
    edit_txt("images.txt", lambda ls: [ls[0], ls[1], ls[2].rsplit(" ", 1)[0] + " ../secret.png", *ls[3:]])(
        tmp_path / "sparse" / "0")
    with pytest.raises(CaptureError, match="outside the capture folder") as info:
        load_capture(tmp_path)
    assert "images.txt" in str(info.value)
