"""The pieces around SfM that need no SfM run: photo layouts, masks, EXIF priors, normalisation,
Sim(3) alignment, and the image formats photo folders bring (16-bit and float TIFF, EXR)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from scipy.spatial.transform import Rotation

from nrconvert.capture.align import pose_errors, umeyama
from nrconvert.capture.exif import read_exif_camera
from nrconvert.capture.images import probe_image, read_pixels
from nrconvert.capture.normalize import normalise
from nrconvert.capture.photos import find_photos, select_photos
from nrconvert.errors import BoundsError, CaptureError, UsageError

from .capture_fixtures import look_at, pattern, write_png


def test_photo_layouts(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    for name in ("b.jpg", "a.png", "notes.txt"):
        (write_png(flat / name, pattern(8, 8)) if name != "notes.txt" else (flat / name).write_text("x"))
    assert [p.name for p in find_photos(flat)] == ["a.png", "b.jpg"]
    nested = tmp_path / "colmap"
    write_png(nested / "images" / "x.png", pattern(8, 8))
    write_png(nested / "stray.png", pattern(8, 8))
    assert [p.name for p in find_photos(nested)] == ["images/x.png"]
    split = tmp_path / "nerf"
    for sub in ("train", "test", "test_relight"):
        write_png(split / sub / "r_0.png", pattern(8, 8))
    assert [(p.name, p.split) for p in find_photos(split)] == [("train/r_0.png", "train"), ("test/r_0.png", "test")]


def test_max_images_and_masks(tmp_path: Path) -> None:
    for i in range(10):
        write_png(tmp_path / "photos" / f"{i:02d}.jpg", pattern(8, 8))
        write_png(tmp_path / "masks" / (f"{i:02d}.jpg.png" if i % 2 else f"{i:02d}.png"), pattern(8, 8, channels=1)[..., 0])
    chosen = select_photos(tmp_path / "photos", max_images=4, masks=tmp_path / "masks")
    assert [p.name for p in chosen.photos] == ["00.jpg", "03.jpg", "06.jpg", "09.jpg"]
    assert len(chosen.left_out) == 6
    assert [p.mask_path.name for p in chosen.photos] == ["00.png", "03.jpg.png", "06.png", "09.jpg.png"]
    (tmp_path / "masks" / "06.png").unlink()
    with pytest.raises(CaptureError, match="no mask for photo '06.jpg'"):
        select_photos(tmp_path / "photos", masks=tmp_path / "masks")
    with pytest.raises(UsageError):
        select_photos(tmp_path / "photos", max_images=2)


def test_exif_focal_prior(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Canon", "EOS 5D"
    exif.get_ifd(0x8769)[0xA405] = 50  # 50 mm full-frame equivalent
    path = tmp_path / "p.jpg"
    Image.fromarray(pattern(300, 200)).save(path, exif=exif)
    cam = read_exif_camera(path, 300, 200)
    assert cam.body == "Canon EOS 5D"
    assert cam.focal_px == pytest.approx(50 * math.hypot(300, 200) / math.hypot(36, 24))
    exif = Image.Exif()
    sub = exif.get_ifd(0x8769)
    sub[0x920A], sub[0xA20E], sub[0xA210] = 4.0, 100.0, 4  # 4 mm lens, 100 px/mm sensor
    Image.fromarray(pattern(300, 200)).save(path, exif=exif)
    assert read_exif_camera(path, 300, 200).focal_px == pytest.approx(400.0)
    Image.fromarray(pattern(300, 200)).save(tmp_path / "none.png")
    assert not read_exif_camera(tmp_path / "none.png", 300, 200).has_prior


def _orbit(n: int, tilt: np.ndarray) -> np.ndarray:
    """Cameras on a ring at height 1.5 (Z up) looking at the origin, then rotated by `tilt`."""
    poses = []
    for i in range(n):
        a = 2 * math.pi * i / n
        c2w = look_at(np.array([4 * math.cos(a), 4 * math.sin(a), 1.5]), np.zeros(3))
        c2w[:3, :] = tilt @ c2w[:3, :]
        poses.append(c2w)
    return np.stack(poses)


def test_normalise_recovers_up_centre_and_scale() -> None:
    """A Z-up scene moved by a random similarity (as SfM returns it) comes back Z-up, centred on
    the object, its largest half-extent 1; 20 far outliers among the points change nothing."""
    rng = np.random.default_rng(0)
    centre = np.array([3.0, -1.0, 2.0])
    c2ws = _orbit(12, np.eye(3))
    c2ws[:, :3, 3] += centre
    points = rng.uniform(-1, 1, (500, 3)) * [0.8, 0.4, 0.3] + centre
    points = np.concatenate([points, rng.normal(size=(20, 3)) * 50])
    R = Rotation.from_euler("xyz", [40, -25, 70], degrees=True).as_matrix()
    sim = np.eye(4)
    sim[:3, :3], sim[:3, 3] = 2.5 * R, [7.0, 1.0, -4.0]
    raw = sim @ c2ws
    raw[:, :3, :3] /= 2.5
    norm = normalise(raw, points @ sim[:3, :3].T + sim[:3, 3], "test")
    assert norm.up_source == "camera plane"
    up = norm.transform[:3, :3] @ R @ np.array([0.0, 0.0, 1.0])
    assert up / np.linalg.norm(up) @ [0, 0, 1] > 0.9999
    moved_centre = norm.transform[:3, :3] @ (sim[:3, :3] @ centre + sim[:3, 3]) + norm.transform[:3, 3]
    assert np.abs(moved_centre).max() < 0.05
    lo, hi = norm.bounds
    assert np.abs((lo + hi) / 2).max() < 1e-9
    assert max(hi - lo) == pytest.approx(2.4, abs=1e-9)  # half-extent 1, padded by 10 % a side
    assert (hi - lo)[2] < 0.45 * max(hi - lo)  # the flat object stays flat along Z (0.3 vs 0.8)


def test_normalise_refuses_degenerate_layouts() -> None:
    c2ws = np.repeat(np.eye(4)[None], 5, axis=0)
    with pytest.raises(BoundsError, match="one spot") as info:
        normalise(c2ws, np.zeros((50, 3)), "model")
    assert info.value.exit_code == 11
    with pytest.raises(BoundsError, match="collapse"):
        normalise(_orbit(8, np.eye(3)), np.ones((50, 3)), "model")
    with pytest.raises(BoundsError, match="sparse points"):
        normalise(_orbit(8, np.eye(3)), np.zeros((3, 3)), "model")


def test_umeyama_and_pose_errors() -> None:
    truth = _orbit(10, np.eye(3))
    R = Rotation.from_euler("zyx", [30, 10, -50], degrees=True).as_matrix()
    moved = truth.copy()
    moved[:, :3, :3] = R @ truth[:, :3, :3]
    moved[:, :3, 3] = 0.3 * truth[:, :3, 3] @ R.T + [1.0, 2.0, 3.0]
    s, R_back, _ = umeyama(moved[:, :3, 3], truth[:, :3, 3])
    assert s == pytest.approx(1 / 0.3) and np.allclose(R_back, R.T)
    report = pose_errors(moved, truth).report()
    assert report["rotation_max_deg"] < 1e-5 and report["centre_max_pct_radius"] < 1e-6
    moved[0, :3, :3] = Rotation.from_euler("x", 2, degrees=True).as_matrix() @ moved[0, :3, :3]
    assert pose_errors(moved, truth).rotation_deg[0] == pytest.approx(2.0, abs=1e-6)


def test_tiff_16bit_float_and_exr(tmp_path: Path) -> None:
    ramp = (np.linspace(0, 1, 40 * 30 * 4).reshape(30, 40, 4) * 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "a16.tif", ramp)
    rgb, alpha = read_pixels(tmp_path / "a16.tif")
    assert np.allclose(rgb, ramp[..., :3] / 65535, atol=1e-6) and np.allclose(alpha, ramp[..., 3] / 65535, atol=1e-6)
    assert len(np.unique(rgb)) > 256  # 16 bits kept
    tifffile.imwrite(tmp_path / "f.tif", ramp[..., :3].astype(np.float32) / 65535, photometric="rgb")
    assert probe_image(tmp_path / "f.tif", "test") == (40, 30)
    assert np.allclose(read_pixels(tmp_path / "f.tif")[0], ramp[..., :3] / 65535, atol=1e-6)
    import pycolmap

    pixels = pattern(12, 8)
    assert pycolmap.Bitmap.from_array(pixels).write(str(tmp_path / "p.exr"))
    rgb, alpha = read_pixels(tmp_path / "p.exr")
    assert probe_image(tmp_path / "p.exr", "test") == (12, 8) and alpha is None
    assert np.abs(rgb * 255 - pixels).max() <= 1.0
    (tmp_path / "bad.exr").write_bytes(b"v/1\x01not an exr")
    with pytest.raises(CaptureError, match="unreadable"):
        probe_image(tmp_path / "bad.exr", "test")
