"""transforms.json loading, image reading, downscaling, undistortion and load_capture dispatch."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nrconvert.capture.images import DistortedFrame, frame_distortion, load_frame_image, scaled_frame
from nrconvert.capture.model import Frame
from nrconvert.capture.load import load_capture
from nrconvert.capture.undistort import Distortion, distort_normalized, undistort_image, undistort_normalized
from nrconvert.errors import CaptureError

try:
    from capture_fixtures import nerf_folder, pattern, ring, write_json, write_png
except ImportError:  # tests/ is a package
    from tests.capture_fixtures import nerf_folder, pattern, ring, write_json, write_png


def by_name(frames):
    return {f.image_path.name: f for f in frames}


def test_nerf_synthetic_folder(tmp_path: Path) -> None:
    poses = nerf_folder(tmp_path, n=6, size=(16, 12), angle_x=0.69)
    cap = load_capture(tmp_path)
    assert cap.source == "transforms" and cap.up_axis == "z" and cap.root == tmp_path.absolute()
    assert len(cap.train) == 6 and len(cap.test) == 3  # transforms_val.json ignored
    f = by_name(cap.train)["r_2.png"]
    fx = 0.5 * 16 / math.tan(0.5 * 0.69)
    np.testing.assert_allclose(f.intrinsics(), [[fx, 0, 8], [0, fx, 6], [0, 0, 1]])
    np.testing.assert_allclose(f.c2w, poses["train"][2])
    assert (f.width, f.height) == (16, 12)
    rgb, alpha = load_frame_image(f)
    expected = pattern(16, 12, seed=2, channels=4).astype(np.float32) / 255
    assert rgb.dtype == np.float32 and rgb.shape == (12, 16, 3) and alpha.shape == (12, 16)
    np.testing.assert_allclose(rgb, expected[..., :3], atol=1e-6)
    np.testing.assert_allclose(alpha, expected[..., 3], atol=1e-6)
    assert frame_distortion(f, cap) is None and type(f) is Frame
    # Naming the train file directly still picks up the test split beside it.
    assert len(load_capture(tmp_path / "transforms_train.json").test) == 3


def nerfstudio_doc(tmp_path: Path, n: int = 10, size=(16, 12), masks: bool = False) -> dict:
    frames = []
    for i, c2w in enumerate(ring(n)):
        write_png(tmp_path / "images" / f"frame_{i:05d}.png", pattern(*size, seed=i))
        frame = {"file_path": f"images/frame_{i:05d}.png", "transform_matrix": c2w.tolist()}
        if masks:
            write_png(tmp_path / "masks" / f"frame_{i:05d}.png", pattern(*size, seed=100 + i, channels=1)[..., 0])
            frame["mask_path"] = f"masks/frame_{i:05d}.png"
        frames.append(frame)
    frames.reverse()  # file order must not matter
    return {"camera_model": "OPENCV", "fl_x": 20.0, "fl_y": 21.0, "cx": 7.5, "cy": 6.5, "w": size[0],
            "h": size[1], "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0, "frames": frames}


def test_nerfstudio_llff_split_overrides_and_masks(tmp_path: Path) -> None:
    doc = nerfstudio_doc(tmp_path, masks=True)
    doc["frames"][-4].update({"fl_x": 30.0, "cx": 8.0, "w": 16})  # frame_00003
    write_json(tmp_path / "transforms.json", doc)
    cap = load_capture(tmp_path / "transforms.json", test_every=4)
    assert sorted(f.image_path.name for f in cap.test) == [f"frame_{i:05d}.png" for i in (0, 4, 8)]
    assert len(cap.train) == 7 and "distortion" not in cap.extras
    frames = by_name(cap.frames)
    f3, f1 = frames["frame_00003.png"], frames["frame_00001.png"]
    assert (f3.fx, f3.fy, f3.cx, f3.cy) == (30.0, 21.0, 8.0, 6.5)
    assert (f1.fx, f1.fy, f1.cx, f1.cy) == (20.0, 21.0, 7.5, 6.5)
    _, alpha = load_frame_image(f1)
    np.testing.assert_allclose(alpha, pattern(16, 12, seed=101, channels=1)[..., 0] / 255, atol=1e-6)
    assert len(load_capture(tmp_path, test_every=0).test) == 0


def test_instant_ngp_sizes_from_headers_jpeg_and_16bit(tmp_path: Path) -> None:
    Image.fromarray(pattern(20, 10)).save(tmp_path / "a.jpg", quality=95)
    gray16 = (np.arange(200, dtype=np.uint16).reshape(10, 20) * 300).astype(np.uint16)
    Image.fromarray(gray16).save(tmp_path / "b.png")
    cams = ring(2)
    doc = {"camera_angle_x": 1.0, "camera_angle_y": 0.6, "aabb_scale": 16,
           "frames": [{"file_path": "a.jpg", "sharpness": 30.0, "transform_matrix": cams[0].tolist()},
                      {"file_path": "./b", "transform_matrix": cams[1].tolist()}]}
    write_json(tmp_path / "transforms.json", doc)
    cap = load_capture(tmp_path)
    frames = by_name(cap.frames)
    b = frames["b.png"]
    assert (b.width, b.height) == (20, 10)
    assert b.fx == pytest.approx(10 / math.tan(0.5)) and b.fy == pytest.approx(5 / math.tan(0.3))
    rgb, alpha = load_frame_image(b)
    assert alpha is None and rgb.shape == (10, 20, 3)
    np.testing.assert_allclose(rgb[..., 1], gray16 / 65535, atol=1e-6)
    rgb, alpha = load_frame_image(frames["a.jpg"])
    assert alpha is None and rgb.shape == (10, 20, 3) and 0 <= rgb.min() and rgb.max() <= 1


def test_nerfstudio_split_lists(tmp_path: Path) -> None:
    doc = nerfstudio_doc(tmp_path, n=5)
    doc["train_filenames"] = [f"images/frame_{i:05d}.png" for i in (0, 1, 2)]
    doc["val_filenames"] = ["images/frame_00003.png"]
    doc["test_filenames"] = ["images/frame_00004.png"]
    write_json(tmp_path / "transforms.json", doc)
    cap = load_capture(tmp_path)
    assert [f.image_path.name for f in cap.test] == ["frame_00004.png"]
    assert len(cap.train) == 3 and len(cap.frames) == 4


def test_nrconvert_object(tmp_path: Path) -> None:
    (tmp_path / "gt_mesh.ply").write_text("ply\n")
    doc = nerfstudio_doc(tmp_path, n=3)
    doc["nrconvert"] = {"gt_mesh": "gt_mesh.ply", "hdri": "studio.exr", "bounds": [[-1, -1, 0], [1, 1, 2]]}
    doc["frames"][0]["nrconvert_eval_mask"] = "masks/a.png"
    write_json(tmp_path / "transforms.json", doc)
    cap = load_capture(tmp_path)
    image = tmp_path.absolute() / doc["frames"][0]["file_path"]
    assert cap.extras["frame_extras"] == {str(image): {"nrconvert_eval_mask": "masks/a.png"}}
    assert cap.gt_mesh_path == tmp_path.absolute() / "gt_mesh.ply"
    assert cap.extras["nrconvert"]["hdri"] == "studio.exr"
    np.testing.assert_array_equal(cap.bounds, [[-1, -1, 0], [1, 1, 2]])


def test_downscale_area_premultiplied(tmp_path: Path) -> None:
    px = np.zeros((5, 5, 4), dtype=np.uint8)
    px[:2, :2] = [[[255, 0, 0, 255], [0, 0, 255, 0]], [[255, 0, 0, 255], [0, 255, 0, 0]]]
    write_png(tmp_path / "i.png", px)
    write_json(tmp_path / "transforms.json", {"fl_x": 10.0, "cx": 2.5, "cy": 2.0, "frames": [
        {"file_path": "i.png", "transform_matrix": np.eye(4).tolist()}]})
    frame = load_capture(tmp_path).frames[0]
    rgb, alpha = load_frame_image(frame, 2)
    assert rgb.shape == (2, 2, 3) and alpha.shape == (2, 2)
    np.testing.assert_allclose(alpha[0, 0], 0.5)
    np.testing.assert_allclose(rgb[0, 0], [1, 0, 0], atol=1e-6)  # transparent colours don't bleed
    small = scaled_frame(frame, 2)
    assert (small.width, small.height, small.fx, small.cx, small.cy) == (2, 2, 5.0, 1.25, 1.0)
    with pytest.raises(CaptureError, match="camera says"):
        load_frame_image(small)


def test_undistort_points_roundtrip() -> None:
    d = Distortion(k1=-0.25, k2=0.08, k3=-0.01, p1=0.002, p2=-0.001)
    x, y = np.meshgrid(np.linspace(-0.6, 0.6, 9), np.linspace(-0.45, 0.45, 7))
    xd, yd = distort_normalized(x, y, d)
    xu, yu = undistort_normalized(xd, yd, d)
    np.testing.assert_allclose(xu, x, atol=1e-9)
    np.testing.assert_allclose(yu, y, atol=1e-9)


def grid_image(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A smooth grid pattern as a function of (undistorted) pixel coordinates."""
    return (0.5 + 0.5 * np.cos(2 * np.pi * u / 14) * np.cos(2 * np.pi * v / 14)).astype(np.float32)


def distorted_grid(K: np.ndarray, d: Distortion, w: int, h: int) -> np.ndarray:
    """What a lens with distortion d records when looking at the grid (analytic, no resampling)."""
    ud, vd = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    x, y = undistort_normalized((ud - K[0, 2]) / K[0, 0], (vd - K[1, 2]) / K[1, 1], d)
    return grid_image(x * K[0, 0] + K[0, 2], y * K[1, 1] + K[1, 2])


def test_undistort_grid_image() -> None:
    w, h = 160, 120
    K = np.array([[150.0, 0, 80.0], [0, 150.0, 60.0], [0, 0, 1]])
    d = Distortion(k1=-0.2, k2=0.05)
    photo = distorted_grid(K, d, w, h)
    truth = grid_image(*np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5))
    fixed = undistort_image(photo, K, d)
    inner = np.s_[10:-10, 10:-10]
    assert np.abs(photo - truth)[inner].mean() > 0.1  # the distortion is visible...
    assert np.abs(fixed - truth)[inner].max() < 0.05  # ...and removed
    assert np.abs(fixed - truth)[inner].mean() < 0.01


def test_distortion_applied_at_load(tmp_path: Path) -> None:
    w, h = 64, 48
    K = np.array([[60.0, 0, 32.0], [0, 60.0, 24.0], [0, 0, 1]])
    d = Distortion(k1=-0.25, k2=0.05, p1=0.001)
    photo = np.round(distorted_grid(K, d, w, h) * 65535).astype(np.uint16)
    Image.fromarray(photo).save(tmp_path / "p.png")
    write_json(tmp_path / "transforms.json", {"fl_x": 60.0, "cx": 32.0, "cy": 24.0, "k1": -0.25, "k2": 0.05,
                                              "p1": 0.001, "frames": [{"file_path": "p.png",
                                                                       "transform_matrix": np.eye(4).tolist()}]})
    cap = load_capture(tmp_path)
    frame = cap.frames[0]
    assert isinstance(frame, DistortedFrame) and frame_distortion(frame) == d
    plain = Frame(**{k: getattr(frame, k) for k in Frame.__dataclass_fields__})  # e.g. rebuilt from JSON
    assert frame_distortion(plain) is None and frame_distortion(plain, cap) == d
    truth = grid_image(*np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5))
    fixed, _ = load_frame_image(frame)  # undistorted automatically
    raw, _ = load_frame_image(frame, distortion=Distortion())
    np.testing.assert_array_equal(load_frame_image(plain, distortion=d)[0], fixed)
    small, _ = load_frame_image(frame, 2)  # undistort at full resolution, then area-average
    np.testing.assert_allclose(small, fixed.reshape(24, 2, 32, 2, 3).mean(axis=(1, 3)), atol=1e-6)
    assert np.abs(fixed[..., 0] - truth)[5:-5, 5:-5].max() < 0.08
    assert np.abs(raw[..., 0] - truth)[5:-5, 5:-5].max() > 0.3


# ---- malformed inputs -------------------------------------------------------------------------


def set_frame(i, **kw):
    def edit(doc):
        doc["frames"][i].update(kw)
    return edit


def drop(key, i=None):
    def edit(doc):
        (doc if i is None else doc["frames"][i]).pop(key)
    return edit


def set_top(**kw):
    return lambda doc: doc.update(kw)


CASES = {
    "missing frames": (drop("frames"), "frames"),
    "empty frames": (set_top(frames=[]), "frames"),
    "frame not an object": (set_top(frames=[3]), "frames[0]"),
    "no file_path": (drop("file_path", 1), "frames[1].file_path"),
    "matrix 3x3": (set_frame(0, transform_matrix=np.eye(3).tolist()), "frames[0].transform_matrix"),
    "matrix strings": (set_frame(0, transform_matrix=[["1"] * 4] * 4), "frames[0].transform_matrix"),
    "matrix NaN": (set_frame(1, transform_matrix=[[float("nan")] * 4] * 4), "frames[1].transform_matrix"),
    "matrix scaled": (set_frame(0, transform_matrix=(np.eye(4) * 2).tolist()), "frames[0].transform_matrix"),
    "no matrix": (drop("transform_matrix", 0), "frames[0].transform_matrix"),
    "no focal": (drop("fl_x"), "focal length"),
    "zero focal": (set_top(fl_x=0.0), "fl_x"),
    "negative frame focal": (set_frame(1, fl_x=-3.0), "frames[1].fl_x"),
    "bad angle": (lambda d: (d.pop("fl_x"), d.update(camera_angle_x=4.0)), "camera_angle_x"),
    "focal string": (set_top(fl_x="20"), "fl_x"),
    "image missing": (set_frame(0, file_path="images/nope.png"), "frames[0].file_path"),
    "escape": (set_frame(0, file_path="../outside.png"), "frames[0].file_path"),
    "absolute": (set_frame(1, file_path="/etc/passwd"), "frames[1].file_path"),
    "width mismatch": (set_top(w=99), "w"),
    "frame height mismatch": (set_frame(1, h=13), "frames[1].h"),
    "fisheye model": (set_top(camera_model="OPENCV_FISHEYE"), "camera_model"),
    "equirect model": (set_frame(0, camera_model="EQUIRECTANGULAR"), "frames[0].camera_model"),
    "is_fisheye": (set_top(is_fisheye=True), "is_fisheye"),
    "k4": (set_top(k4=0.1), "k4"),
    "k1 string": (set_top(k1="x"), "k1"),
    "mask missing": (set_frame(0, mask_path="masks/none.png"), "frames[0].mask_path"),
    "mask escape": (set_frame(0, mask_path="../../m.png"), "frames[0].mask_path"),
    "gt mesh missing": (set_top(nrconvert={"gt_mesh": "gt.ply"}), "nrconvert.gt_mesh"),
    "nrconvert not object": (set_top(nrconvert=[1]), "nrconvert"),
    "split list not list": (set_top(test_filenames="a.png"), "test_filenames"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_transforms(tmp_path: Path, case: str) -> None:
    edit, field = CASES[case]
    doc = nerfstudio_doc(tmp_path, n=2)
    edit(doc)
    path = write_json(tmp_path / "transforms.json", doc)
    with pytest.raises(CaptureError) as info:
        load_capture(tmp_path)
    assert str(path) in str(info.value) and field in str(info.value)


def test_mask_size_mismatch(tmp_path: Path) -> None:
    doc = nerfstudio_doc(tmp_path, n=2)
    write_png(tmp_path / "m.png", np.zeros((5, 5), np.uint8))
    doc["frames"][0]["mask_path"] = "m.png"
    path = write_json(tmp_path / "transforms.json", doc)
    with pytest.raises(CaptureError, match=r"frames\[0\]\.mask_path: mask is 5x5") as info:
        load_capture(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("text,where", [('{"frames": [', "line 1 column 13"), ('{\n "a": 1,\n}', "line 3 column 1"),
                                        ("[1, 2]", "JSON object")])
def test_invalid_json(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "transforms.json"
    path.write_text(text)
    with pytest.raises(CaptureError) as info:
        load_capture(path)
    assert str(path) in str(info.value) and where in str(info.value)


@pytest.mark.parametrize("kind", ["png", "jpg", "text"])
def test_truncated_or_unreadable_image(tmp_path: Path, kind: str) -> None:
    doc = nerfstudio_doc(tmp_path, n=2, size=(64, 48))
    bad = tmp_path / "images" / f"bad.{'jpg' if kind == 'jpg' else 'png'}"
    if kind == "text":
        bad.write_text("not an image")
    else:
        Image.fromarray(pattern(64, 48)).save(bad)
        bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    doc["frames"][1]["file_path"] = f"images/{bad.name}"
    write_json(tmp_path / "transforms.json", doc)
    with pytest.raises(CaptureError) as info:
        load_capture(tmp_path)
    message = str(info.value)
    assert str(bad) in message and "frames[1].file_path" in message and "transforms.json" in message


def test_truncated_image_at_decode_time(tmp_path: Path) -> None:
    write_json(tmp_path / "transforms.json", nerfstudio_doc(tmp_path, n=2))
    frame = load_capture(tmp_path).frames[0]
    frame.image_path.write_bytes(frame.image_path.read_bytes()[:80])
    with pytest.raises(CaptureError, match="unreadable or truncated") as info:
        load_frame_image(frame)
    assert str(frame.image_path) in str(info.value)


# ---- dispatch ---------------------------------------------------------------------------------


def test_dispatch_errors(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="not found"):
        load_capture(tmp_path / "nothing")
    with pytest.raises(CaptureError, match="no capture found") as info:
        load_capture(tmp_path)
    assert str(tmp_path) in str(info.value)
    other = tmp_path / "notes.txt"
    other.write_text("hi")
    with pytest.raises(CaptureError, match="not a capture file"):
        load_capture(other)
    for i in range(3):
        write_png(tmp_path / "images" / f"{i}.jpg", pattern(8, 8))
    with pytest.raises(CaptureError, match="no camera poses found: 3 photos") as info:
        load_capture(tmp_path)
    assert "pycolmap" in str(info.value) and "hint" in str(info.value)


def test_bad_test_every(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="test_every"):
        load_capture(tmp_path, test_every=1)


def test_only_test_split_is_refused(tmp_path: Path) -> None:
    doc = nerfstudio_doc(tmp_path, n=2)
    doc["test_filenames"] = [f["file_path"] for f in doc["frames"]]
    path = write_json(tmp_path / "transforms.json", doc)
    with pytest.raises(CaptureError, match="no training frames"):
        load_capture(path)
