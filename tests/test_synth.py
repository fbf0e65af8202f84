"""Tests of nrconvert.synth: synthetic captures and GLB renders made with real Blender.

Blender runs in subprocesses; this process never imports bpy. The `blender` tests render the
`tiny` preset (64 px, 16 samples) and take ~15 s together on 2 cores.
"""
from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nrconvert.errors import DependencyError, OutputError, UsageError
from nrconvert.export.validate import validate_glb
from nrconvert.mesh import Mesh
from nrconvert.metrics.geometry import sample_surface
from nrconvert.synth import (
    BlenderRenderError, read_ply, render_capture, render_glb, write_ply,
)
from nrconvert.synth import cameras as cams
from nrconvert.synth._runner import _raise_for_exit, run_blender_job
from nrconvert.synth.presets import CAMERA_ANGLE_X, ELEVATION_RANGE_DEG

_needs_bpy = pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="bpy not installed")


def blender(fn):
    """Mark a test as rendering with Blender (in a subprocess); skip it when bpy is missing."""
    return pytest.mark.blender(_needs_bpy(fn))


SPLITS = ("train", "test", "test_relight")


def _load(root: Path, split: str) -> dict:
    return json.loads((root / f"transforms_{split}.json").read_text())


def _rgba(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGBA"), dtype=np.float64) / 255.0


def _coverage(root: Path, frame: dict) -> np.ndarray:
    """Alpha in [0, 1]: the PNG's alpha channel, or the eval mask of an opaque capture."""
    if "nrconvert_eval_mask" in frame:
        return np.asarray(Image.open(root / frame["nrconvert_eval_mask"]), dtype=np.float64) / 255.0
    return _rgba(root / frame["file_path"])[..., 3]


def _silhouette(points: np.ndarray, c2w: np.ndarray, intr: dict) -> np.ndarray:
    """Boolean image of the pixels hit by projected surface points."""
    uv = np.floor(cams.project(points, c2w, intr)).astype(int)
    w, h = int(intr["w"]), int(intr["h"])
    ok = (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
    sil = np.zeros((h, w), bool)
    sil[uv[ok, 1], uv[ok, 0]] = True
    return sil


# ---------------------------------------------------------------- pure Python, no Blender


def test_importing_synth_does_not_load_bpy() -> None:
    import subprocess
    import sys

    code = "import sys, nrconvert.synth; sys.exit('bpy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_ply_roundtrip(tmp_path: Path) -> None:
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    f = np.array([[0, 1, 2], [0, 1, 3], [1, 2, 3]])
    write_ply(tmp_path / "m.ply", v, f)
    v2, f2 = read_ply(tmp_path / "m.ply")
    assert np.array_equal(v, v2) and np.array_equal(f, f2)


def test_cameras_look_at_origin_and_split() -> None:
    train = cams.train_directions(50, ELEVATION_RANGE_DEG)
    test = cams.test_directions(10, ELEVATION_RANGE_DEG, seed=3, avoid=train)
    elev = np.degrees(np.arcsin(np.r_[train[:, 2], test[:, 2]]))
    assert elev.min() >= -35.01 and elev.max() <= 80.01
    assert np.max(test @ train.T) < np.cos(np.radians(2.0))  # held-out views are new views
    intr = cams.intrinsics(64, 64, CAMERA_ANGLE_X)
    for m in cams.camera_poses(train, 4.0):
        assert np.allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3))
        assert np.allclose(cams.project(np.zeros((1, 3)), m, intr), [[32, 32]])
        assert m[2, 1] > 0  # camera up (+Y) has a positive world-Z component: not upside down


def test_bad_names_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        render_capture(tmp_path / "c", object="teapot")
    with pytest.raises(UsageError):
        render_capture(tmp_path / "c", preset="huge")
    with pytest.raises(UsageError):
        render_capture(tmp_path / "c", hdri="nowhere.exr")


def test_refuses_to_overwrite_a_folder_that_is_not_a_capture(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "keep.jpg").write_bytes(b"not ours")
    with pytest.raises(OutputError):
        render_capture(tmp_path / "photos")
    assert (tmp_path / "photos" / "keep.jpg").read_bytes() == b"not ours"


def test_missing_bpy_exit_code_is_dependency_error() -> None:
    with pytest.raises(DependencyError, match="nrconvert\\[blender\\]"):
        _raise_for_exit(3, "ModuleNotFoundError: No module named 'bpy'", [])


def test_unimportable_bpy_in_the_subprocess_is_a_dependency_error(tmp_path: Path, monkeypatch) -> None:
    """A bpy that fails to import in the child (broken install) surfaces as DependencyError."""
    (tmp_path / "bpy.py").write_text("raise ImportError('libGL.so.1: cannot open shared object file')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    with pytest.raises(DependencyError, match="nrconvert\\[blender\\]"):
        run_blender_job({"scene": {"object": "box"}, "render": {}, "worlds": {}, "passes": [], "gt_mesh": None})


# ---------------------------------------------------------------- Blender renders


@pytest.fixture(scope="module")
def suzanne_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[int, int]]]:
    """The tiny suzanne capture and the progress callbacks its rendering made."""
    calls: list[tuple[int, int]] = []
    root = render_capture(tmp_path_factory.mktemp("synth") / "suzanne", object="suzanne", preset="tiny",
                          progress=lambda d, t: calls.append((d, t)))
    return root, calls


@pytest.fixture(scope="module")
def suzanne(suzanne_run: tuple[Path, list[tuple[int, int]]]) -> Path:
    return suzanne_run[0]


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_capture(tmp_path_factory.mktemp("synth") / "box", object="box", preset="tiny",
                          background="opaque", hdri="studio", relight_hdri="sunset.exr")


@blender
@pytest.mark.parametrize("name", ["suzanne", "box"])
def test_capture_layout(name: str, request: pytest.FixtureRequest) -> None:
    root: Path = request.getfixturevalue(name)
    counts = {"train": 16, "test": 4, "test_relight": 4}
    for split in SPLITS:
        data = _load(root, split)
        assert data["w"] == data["h"] == 64 and abs(data["camera_angle_x"] - 0.6911) < 1e-3
        assert data["fl_x"] == pytest.approx(32 / np.tan(data["camera_angle_x"] / 2))
        block = data["nrconvert"]
        assert block["gt_mesh"] == "gt_mesh.ply" and block["object"] == name and block["preset"] == "tiny"
        assert len(data["frames"]) == counts[split]
        for frame in data["frames"]:
            assert np.array(frame["transform_matrix"]).shape == (4, 4)
            with Image.open(root / frame["file_path"]) as im:
                assert im.size == (64, 64)
                assert im.mode == ("RGB" if block["background"] == "opaque" else "RGBA")
            assert ("nrconvert_eval_mask" in frame) == (block["background"] == "opaque")
    test, relit = _load(root, "test"), _load(root, "test_relight")
    assert [f["transform_matrix"] for f in test["frames"]] == [f["transform_matrix"] for f in relit["frames"]]
    assert not list(root.parent.glob(".*partial*"))  # the temporary folder was renamed away


@blender
@pytest.mark.parametrize("name", ["suzanne", "box"])
def test_object_visible_centred_and_textured(name: str, request: pytest.FixtureRequest) -> None:
    root: Path = request.getfixturevalue(name)
    data = _load(root, "train")
    ys, xs = np.mgrid[:64, :64] + 0.5
    dominant: set[int] = set()
    for frame in data["frames"]:
        a = _coverage(root, frame)
        assert 0.08 < a.mean() < 0.6, a.mean()
        assert abs((a * xs).sum() / a.sum() - 32) < 8 and abs((a * ys).sum() / a.sum() - 32) < 8
        assert a[0].max() == 0 and a[-1].max() == 0  # nothing cut off at the borders
        rgb = _rgba(root / frame["file_path"])[..., :3][a > 0.99]
        assert rgb.std(axis=0).max() > 0.08  # a pattern, not one flat shade
        dominant |= set(np.argmax(rgb, axis=1).tolist())
    assert dominant == {0, 1, 2}  # red, green and blue surfaces all show up somewhere


@blender
def test_relit_views_differ_from_test_views(suzanne: Path) -> None:
    root = suzanne
    a = _rgba(root / "test/r_000.png")
    b = _rgba(root / "test_relight/r_000.png")
    assert np.array_equal(a[..., 3], b[..., 3])  # same camera, same silhouette
    assert np.abs(a[..., :3] - b[..., :3])[a[..., 3] > 0.99].mean() > 0.02  # different light


@blender
def test_progress_reports_every_view(suzanne_run: tuple[Path, list[tuple[int, int]]]) -> None:
    _, calls = suzanne_run
    assert calls == [(i, 24) for i in range(1, 25)]


@blender
@pytest.mark.parametrize("name", ["suzanne", "box"])
def test_gt_mesh_matches_the_silhouettes(name: str, request: pytest.FixtureRequest) -> None:
    """Projecting the GT mesh with transform_matrix must reproduce the rendered silhouette."""
    root: Path = request.getfixturevalue(name)
    verts, faces = read_ply(root / "gt_mesh.ply")
    assert len(faces) > 10 and faces.max() < len(verts)
    assert np.all(np.abs(verts) <= 1.0) and np.ptp(verts, axis=0).min() > 0.5
    points = sample_surface(Mesh(verts.astype(np.float64), faces), 100_000)
    data = _load(root, "test")
    for frame in data["frames"]:
        c2w = np.array(frame["transform_matrix"])
        centroid = cams.project(verts.mean(axis=0, keepdims=True).astype(np.float64), c2w, data)[0]
        assert np.all(np.abs(centroid - 32) < 10)
        sil, a = _silhouette(points, c2w, data), _coverage(root, frame) > 0.5
        iou = (sil & a).sum() / (sil | a).sum()
        assert iou > 0.85, iou


@blender
def test_same_seed_renders_identical_pixels(suzanne: Path, tmp_path: Path) -> None:
    root = suzanne
    again = render_capture(tmp_path / "again", object="suzanne", preset="tiny")
    for split in SPLITS:
        assert _load(root, split) == _load(again, split)
        for frame in _load(root, split)["frames"]:
            assert np.array_equal(_rgba(root / frame["file_path"]), _rgba(again / frame["file_path"]))


def _mesh_glb(path: Path, positions: np.ndarray, faces: np.ndarray, color: tuple[float, float, float]) -> None:
    """A one-material triangle-mesh GLB written with pygltflib; without normals glTF shades it flat."""
    import pygltflib as g

    pos = np.ascontiguousarray(positions, np.float32)
    idx = np.ascontiguousarray(faces, np.uint32).reshape(-1)
    blob = pos.tobytes() + idx.tobytes()
    gltf = g.GLTF2(
        scene=0, scenes=[g.Scene(nodes=[0])], nodes=[g.Node(mesh=0, name="asset")],
        meshes=[g.Mesh(primitives=[g.Primitive(attributes=g.Attributes(POSITION=0), indices=1, material=0)])],
        materials=[g.Material(pbrMetallicRoughness=g.PbrMetallicRoughness(
            baseColorFactor=[*color, 1.0], metallicFactor=0.0, roughnessFactor=0.8))],
        accessors=[
            g.Accessor(bufferView=0, componentType=g.FLOAT, count=len(pos), type=g.VEC3,
                       min=pos.min(0).tolist(), max=pos.max(0).tolist()),
            g.Accessor(bufferView=1, componentType=g.UNSIGNED_INT, count=len(idx), type=g.SCALAR),
        ],
        bufferViews=[
            g.BufferView(buffer=0, byteOffset=0, byteLength=pos.nbytes, target=g.ARRAY_BUFFER),
            g.BufferView(buffer=0, byteOffset=pos.nbytes, byteLength=idx.nbytes, target=g.ELEMENT_ARRAY_BUFFER),
        ],
        buffers=[g.Buffer(byteLength=len(blob))],
    )
    gltf.set_binary_blob(blob)
    gltf.save_binary(str(path))


@blender
def test_render_glb_shows_the_asset_where_the_cameras_expect(suzanne: Path, tmp_path: Path) -> None:
    """The GT mesh exported Y-up (glTF = capture (x, z, -y)) must render on the capture's silhouettes."""
    root = suzanne
    verts, faces = read_ply(root / "gt_mesh.ply")
    glb = tmp_path / "asset.glb"
    _mesh_glb(glb, np.stack([verts[:, 0], verts[:, 2], -verts[:, 1]], axis=1), faces, (0.8, 0.05, 0.05))
    assert struct.unpack("<4s", glb.read_bytes()[:4])[0] == b"glTF"
    report = validate_glb(glb)
    assert report.errors == 0, report.format()
    calls: list[tuple[int, int]] = []
    paths = render_glb(glb, root, tmp_path / "renders", split="test", samples=8,
                       progress=lambda d, t: calls.append((d, t)))
    data = _load(root, "test")
    assert [p.name for p in paths] == [Path(f["file_path"]).name for f in data["frames"]]
    assert calls[-1] == (4, 4)
    for frame, path in zip(data["frames"], paths):
        img = _rgba(path)
        assert img.shape == (64, 64, 4)
        got, want = img[..., 3] > 0.5, _coverage(root, frame) > 0.5
        assert (got & want).sum() / (got | want).sum() > 0.95
        rgb = img[..., :3][img[..., 3] > 0.99]
        assert rgb[:, 0].mean() > 2 * rgb[:, 1:].mean()  # red, as the material says


@blender
def test_subprocess_failure_carries_stderr(tmp_path: Path) -> None:
    job = {"scene": {"object": "box"},
           "render": {"w": 8, "h": 8, "camera_angle_x": 0.7, "samples": 1, "denoise": False, "seed": 0,
                      "background": "transparent"},
           "worlds": {"world": {"hdri": str(tmp_path / "missing.exr")}}, "passes": [], "gt_mesh": None}
    with pytest.raises(BlenderRenderError, match="missing.exr"):
        run_blender_job(job)
