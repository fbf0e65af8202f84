"""Tests of the `materials` synth object: a rough textured sphere, a glossy blue cube and a gold
metal torus in one mesh, rendered by real Blender under HDRI A (train/test) and HDRI B (test_relight).

One `tiny` capture (64 px, 16 samples, ~10 s on 2 cores) serves every test.
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

from nrconvert.metrics.image import psnr
from nrconvert.synth import OBJECTS, read_ply, render_capture
from nrconvert.synth import cameras as cams

pytestmark = [pytest.mark.blender,
              pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="bpy not installed")]


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_capture(tmp_path_factory.mktemp("synth") / "materials", object="materials", preset="tiny")


def _rgba(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGBA"), dtype=np.float64) / 255.0


def _frames(root: Path, split: str) -> list[dict]:
    return json.loads((root / f"transforms_{split}.json").read_text())["frames"]


def _parts(faces: np.ndarray, n_verts: int) -> np.ndarray:
    """Connected-component label per face (faces sharing a vertex are connected)."""
    f = np.asarray(faces)
    rows = np.repeat(np.arange(len(f)), 3)
    adj = coo_matrix((np.ones(rows.size), (rows, f.reshape(-1))), shape=(len(f), n_verts)).tocsr()
    _, labels = connected_components(adj @ adj.T, directed=False)
    return labels


def test_materials_is_a_known_object() -> None:
    assert "materials" in OBJECTS


def test_three_parts_of_similar_size_inside_the_unit_cube(capture: Path) -> None:
    verts, faces = read_ply(capture / "gt_mesh.ply")
    assert np.all(np.abs(verts) <= 0.95)
    labels = _parts(faces, len(verts))
    assert labels.max() + 1 == 3
    centres = np.array([verts[faces[labels == k]].reshape(-1, 3).mean(0) for k in range(3)])
    gaps = np.linalg.norm(centres[:, None] - centres[None], axis=-1)[np.triu_indices(3, 1)]
    assert gaps.min() > 0.5  # side by side, not nested
    tri = verts[faces].astype(np.float64)
    area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1) / 2
    share = np.bincount(labels, weights=area) / area.sum()
    assert share.min() > 0.15, share  # each part a visible share of the surface


def test_visible_centred_and_not_cut_off(capture: Path) -> None:
    ys, xs = np.mgrid[:64, :64] + 0.5
    for frame in _frames(capture, "train"):
        a = _rgba(capture / frame["file_path"])[..., 3]
        assert 0.05 < a.mean() < 0.6, a.mean()
        assert abs((a * xs).sum() / a.sum() - 32) < 10 and abs((a * ys).sum() / a.sum() - 32) < 10
        assert a[0].max() == 0 and a[-1].max() == 0 and a[:, 0].max() == 0 and a[:, -1].max() == 0


def test_gt_mesh_matches_the_silhouettes(capture: Path) -> None:
    verts, faces = read_ply(capture / "gt_mesh.ply")
    data = json.loads((capture / "transforms_test.json").read_text())
    rng = np.random.default_rng(0)
    tri = verts[faces][rng.integers(0, len(faces), 200_000)]
    u, v = rng.random((2, len(tri), 1))
    flip = (u + v) > 1
    u, v = np.where(flip, 1 - u, u), np.where(flip, 1 - v, v)
    points = tri[:, 0] + u * (tri[:, 1] - tri[:, 0]) + v * (tri[:, 2] - tri[:, 0])
    for frame in data["frames"]:
        uv = np.floor(cams.project(points, np.array(frame["transform_matrix"]), data)).astype(int)
        sil = np.zeros((64, 64), bool)
        ok = np.all((uv >= 0) & (uv < 64), axis=1)
        sil[uv[ok, 1], uv[ok, 0]] = True
        a = _rgba(capture / frame["file_path"])[..., 3] > 0.5
        assert (sil & a).sum() / (sil | a).sum() > 0.85


def test_relit_views_are_a_different_lighting(capture: Path) -> None:
    """HDRI B must change the object's look well beyond noise, or relighting tests nothing."""
    for frame_a, frame_b in zip(_frames(capture, "test"), _frames(capture, "test_relight")):
        a, b = _rgba(capture / frame_a["file_path"]), _rgba(capture / frame_b["file_path"])
        assert np.array_equal(a[..., 3], b[..., 3])
        obj = a[..., 3] > 0.99
        assert psnr(a[..., :3][obj], b[..., :3][obj]) < 20.0  # measured ~12 dB: forest vs courtyard


def test_surfaces_differ_in_colour_and_gloss(capture: Path) -> None:
    """The gold metal, the blue dielectric and the multicoloured cells all show up."""
    seen = np.concatenate([_rgba(capture / f["file_path"]).reshape(-1, 4) for f in _frames(capture, "train")])
    rgb = seen[seen[:, 3] > 0.99, :3]
    gold = (rgb[:, 0] > 0.45) & (rgb[:, 1] > 0.3) & (rgb[:, 2] < 0.6 * rgb[:, 1]) & (rgb[:, 0] >= rgb[:, 1])
    blue = (rgb[:, 2] > 0.4) & (rgb[:, 2] > 1.5 * rgb[:, 0])
    assert gold.mean() > 0.05 and blue.mean() > 0.15, (gold.mean(), blue.mean())
    assert (rgb.min(1) > 0.9).mean() > 0.01  # white specular highlights (measured 3 %)
