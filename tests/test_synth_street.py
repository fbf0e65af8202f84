"""The `street` synth scene: a row of objects seen from cameras driving past it (issue 8's capture).

Blender runs in a subprocess (one tiny render, ~1 min on 2 cores); this process never imports bpy.
The checks are what block splitting relies on: several separate objects spread along X, every
object seen by several training cameras, no camera seeing the whole row, pixels where objects project.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from nrconvert.capture.load import load_capture
from nrconvert.errors import UsageError
from nrconvert.mesh import Mesh
from nrconvert.metrics.geometry import sample_surface_faces
from nrconvert.synth import read_ply, render_capture
from nrconvert.synth import cameras as cams
from nrconvert.synth.street import STREET_PRESETS, street_plan

blender = pytest.mark.blender(
    pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="bpy not installed"))

W, H = STREET_PRESETS["tiny"].width, STREET_PRESETS["tiny"].height


def _objects(verts: np.ndarray, faces: np.ndarray, gap: float = 0.2, n: int = 200_000) -> list[np.ndarray]:
    """Area-weighted surface samples of each of the mesh's objects, in row order: its connected
    components, merged when their boxes nearly touch (Suzanne's eyes are separate components inside
    her head; `materials` is three parts)."""
    m = len(verts)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]]])
    _, label = connected_components(coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), (m, m)))
    groups = [np.flatnonzero(label[faces[:, 0]] == k) for k in np.unique(label)]
    box = [(verts[faces[g]].reshape(-1, 3).min(0), verts[faces[g]].reshape(-1, 3).max(0)) for g in groups]
    merged = True
    while merged:
        merged = False
        for i in range(len(groups)):
            near = [j for j in range(i + 1, len(groups))
                    if np.all(box[i][0] - gap <= box[j][1]) and np.all(box[j][0] - gap <= box[i][1])]
            if near:
                j = near[0]
                groups[i] = np.concatenate([groups[i], groups.pop(j)])
                (lo_i, hi_i), (lo_j, hi_j) = box[i], box.pop(j)
                box[i] = (np.minimum(lo_i, lo_j), np.maximum(hi_i, hi_j))
                merged = True
                break
    points = sample_surface_faces(Mesh(verts.astype(np.float64), faces), n)
    owner = np.empty(len(faces), int)
    for k, g in enumerate(groups):
        owner[g] = k
    objs = [points[0][owner[points[1]] == k] for k in range(len(groups))]
    return sorted(objs, key=lambda p: float(p[:, 0].mean()))


def _in_view(points: np.ndarray, c2w: np.ndarray, intr: dict) -> np.ndarray:
    """Which points project inside the image, in front of the camera."""
    depth = -(np.c_[points, np.ones(len(points))] @ np.linalg.inv(c2w).T)[:, 2]
    uv = cams.project(points, c2w, intr)
    return (depth > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < intr["w"]) & (uv[:, 1] >= 0) & (uv[:, 1] < intr["h"])


def _alpha(root: Path, frame: dict) -> np.ndarray:
    return np.asarray(Image.open(root / frame["file_path"]).convert("RGBA"), np.float64)[..., 3] / 255.0


# ---------------------------------------------------------------- pure Python, no Blender


def test_held_out_cameras_lie_between_training_cameras_on_the_lane() -> None:
    plan = street_plan("standard", seed=0)
    train = np.array([m[:3, 3] for m in plan.poses["train"]])
    test = np.array([m[:3, 3] for m in plan.poses["test"]])
    assert len(train) >= 180 and len(test) >= 30 and (plan.width, plan.height) == (320, 240)
    assert np.allclose(np.r_[train, test][:, 1], train[0, 1])  # one lane, parallel to X
    assert len(np.unique(np.round(train[:, 2], 3))) >= 2  # at least two heights
    nearest = np.min(np.linalg.norm(test[:, None] - train[None], axis=2), axis=1)
    assert nearest.min() > 0.1  # no held-out view repeats a training view
    assert train[:, 0].min() < test[:, 0].min() and test[:, 0].max() < train[:, 0].max()


def test_street_rejects_presets_it_has_not(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="street"):
        render_capture(tmp_path / "c", object="street", preset="demo")


# ---------------------------------------------------------------- Blender render


@pytest.fixture(scope="module")
def street(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_capture(tmp_path_factory.mktemp("synth") / "street", object="street", preset="tiny")


@pytest.fixture(scope="module")
def row(street: Path) -> list[np.ndarray]:
    return _objects(*read_ply(street / "gt_mesh.ply"))


@blender
def test_the_capture_loads_like_any_synth_capture(street: Path) -> None:
    cap = load_capture(street)
    assert len(cap.train) == STREET_PRESETS["tiny"].n_train and len(cap.test) == STREET_PRESETS["tiny"].n_test
    assert cap.gt_mesh_path == street / "gt_mesh.ply"
    assert {(f.width, f.height) for f in cap.frames} == {(W, H)}
    relit = json.loads((street / "transforms_test_relight.json").read_text())
    assert [f["transform_matrix"] for f in relit["frames"]] == [f.c2w.tolist() for f in cap.test]


@blender
def test_the_ground_truth_is_a_row_of_separate_objects_along_x(street: Path, row: list[np.ndarray]) -> None:
    block = json.loads((street / "transforms_train.json").read_text())["nrconvert"]
    assert len(row) == len(block["street"]["row"]) >= 6
    centres = np.array([g.mean(axis=0) for g in row])
    assert np.allclose(centres[:, 0], [it["x"] for it in block["street"]["row"]], atol=0.5)
    lo, hi = np.array([g.min(0) for g in row]), np.array([g.max(0) for g in row])
    assert np.all(lo[1:, 0] - hi[:-1, 0] > 0.2)  # each object clear of the next
    assert np.ptp(centres[:, 0]) > 4 * np.ptp(centres[:, 1])  # a row along X, not a cluster
    assert np.allclose(lo[:, 2], 0.0, atol=0.02)  # standing on the (invisible) ground


@blender
def test_each_object_is_seen_by_several_cameras_and_no_camera_sees_the_row(street: Path,
                                                                             row: list[np.ndarray]) -> None:
    data = json.loads((street / "transforms_train.json").read_text())
    centres = np.array([g.mean(axis=0) for g in row])
    seen = np.array([_in_view(centres, np.array(f["transform_matrix"]), data) for f in data["frames"]])
    assert seen.sum(axis=0).min() >= 5, seen.sum(axis=0)  # every object, from several cameras
    per_camera = seen.sum(axis=1)
    assert per_camera.min() >= 1 and np.median(per_camera) <= 3 and per_camera.max() <= len(row) - 3, per_camera


@blender
def test_objects_render_where_they_project(street: Path, row: list[np.ndarray]) -> None:
    """The film is covered at the projected vertices of every object in view, and empty away from
    the boxes they project to: the pixels and the GT mesh agree, object by object."""
    for split in ("train", "test"):
        data = json.loads((street / f"transforms_{split}.json").read_text())
        for frame in data["frames"][::3]:
            c2w, alpha = np.array(frame["transform_matrix"]), _alpha(street, frame)
            covered = np.zeros_like(alpha, bool)
            for obj in row:
                inside = _in_view(obj, c2w, data)
                if not inside.any():
                    continue
                uv = np.floor(cams.project(obj[inside], c2w, data)).astype(int)
                if inside.mean() > 0.5:
                    assert np.mean(alpha[uv[:, 1], uv[:, 0]] > 0.5) > 0.6, (split, frame["file_path"])
                (x0, y0), (x1, y1) = uv.min(0) - 2, uv.max(0) + 3
                covered[max(y0, 0):y1, max(x0, 0):x1] = True
            assert covered.any(), frame["file_path"]
            assert alpha[~covered].mean() < 0.02, frame["file_path"]  # nothing where no object is
