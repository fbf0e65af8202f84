"""Blocks without training: scene hull, split geometry, camera assignment, pixel labels, mesh cuts,
the multi-block GLB and the OpenJD progress lines. The capture is tests/street_scene.py's row of six
objects (no bpy), whose ground truth (object centres, which object each pixel sees) is known."""
from __future__ import annotations

import io

import numpy as np
import pytest

from nrconvert.blocks.clip import clip_slab
from nrconvert.blocks.labels import EMPTY, KEEP, frame_labels
from nrconvert.blocks.openjd import OpenJdReporter
from nrconvert.blocks.scene import build_scene_hull
from nrconvert.blocks.split import BALANCE_TOLERANCE, Layout, rays_through, balanced_cuts, block_count, split_scene
from nrconvert.capture.load import load_capture
from nrconvert.errors import UsageError
from nrconvert.mesh import Mesh
from nrconvert.render.rays import Box

from .street_scene import CENTRES, HALF, RADIUS, object_ids, write_street
from .test_lod import icosphere


@pytest.fixture(scope="module")
def street(tmp_path_factory):
    root = write_street(tmp_path_factory.mktemp("street") / "street", n_train=40, n_test=4, size=(80, 60))
    capture = load_capture(root)
    return capture, build_scene_hull(capture.train)


def test_hull_holds_every_object_and_little_else(street):
    capture, hull = street
    pts = hull.points()
    reach = max(RADIUS, HALF * np.sqrt(3))
    for c in CENTRES:
        assert np.linalg.norm(pts - c, axis=1).min() < 0.1, f"no hull cell near the object at {c}"
    near = np.linalg.norm(pts[:, None] - CENTRES[None], axis=2).min(1) < reach + 0.6
    assert near.mean() > 0.9, f"only {near.mean():.0%} of the hull lies near an object"
    assert hull.lo[0] < CENTRES[0, 0] - RADIUS and hull.hi[0] > CENTRES[-1, 0] + HALF


@pytest.mark.parametrize("n", [2, 3])
def test_split_partitions_the_row(street, n, tmp_path):
    capture, hull = street
    layout = split_scene(capture, hull, n)
    assert len(layout.blocks) == n and [b.id for b in layout.blocks] == list(range(1, n + 1))
    assert abs(abs(layout.axis[0]) - 1) < 1e-6  # the row runs along x
    # every training camera is used by at least one block
    used = set().union(*(b.cameras for b in layout.blocks))
    assert used == set(range(len(capture.train)))
    # own regions partition the axis: each coordinate belongs to exactly one block
    s = np.linspace(hull.lo[0] - 1, hull.hi[0] + 1, 2001) * np.sign(layout.axis[0])
    owners = np.stack([b.owns(s) for b in layout.blocks]).sum(0)
    assert (owners == 1).all()
    # each block's box holds the scene within its own region plus the overlap, so neighbours overlap
    pts = hull.points(core=True)
    ax = np.asarray(layout.axis)
    for b in layout.blocks:
        near = pts[b.owns(pts @ ax, 0.99 * layout.overlap)]
        inside = ((near >= np.asarray(b.lo) - 1e-6) & (near <= np.asarray(b.hi) + 1e-6)).all(1)
        assert inside.mean() > 0.99
    for a, b in zip(layout.blocks, layout.blocks[1:]):
        assert a.own[1] == b.own[0]
    assert layout.overlap > 0.1 * (hull.hi[0] - hull.lo[0]) / n
    # every object centre lies in some block's cube, and the layout round-trips through JSON
    for c in CENTRES:
        assert any((np.asarray(b.lo) <= c).all() and (c <= np.asarray(b.hi)).all() for b in layout.blocks)
    layout.save(tmp_path / "blocks.json")
    assert Layout.load(tmp_path / "blocks.json") == layout


def test_balanced_cuts_even_out_a_skewed_load():
    # rays per block: the integral of a density that is 4x higher at the right end of [0, 10]
    def rays(cuts):
        c = np.asarray(cuts)
        return np.diff(c + 0.15 * c ** 2)
    cuts = balanced_cuts(0.0, 10.0, 3, rays)
    load = rays(cuts)
    assert cuts[0] == 0.0 and cuts[-1] == 10.0 and np.all(np.diff(cuts) > 0)
    assert load.max() <= (1 + BALANCE_TOLERANCE) * load.mean(), load
    assert rays([0, 10 / 3, 20 / 3, 10]).max() > 1.3 * load.max()  # the equal split was lopsided
    assert balanced_cuts(0.0, 10.0, 1, rays) == [0.0, 10.0]


def test_split_balances_the_blocks_rays(street):
    capture, hull = street
    layout = split_scene(capture, hull, 3)
    rays = np.array([sum(rays_through(capture.train[i], b) for i in b.cameras) for b in layout.blocks])
    assert rays.max() <= 1.1 * rays.mean(), rays


def test_block_count_and_ids():
    assert block_count("3", 10.0, 1.0, 100) == 3
    assert block_count("auto", 10.0, 1.0, 100) == 4  # 10 long / (2 x 1 wide) = 5, but >= 24 cameras each
    assert block_count("auto", 10.0, 1.0, 1000) == 5
    assert block_count("auto", 1.2, 1.0, 1000) == 1  # an object, not a street
    layout = Layout([1.0, 0.0, 0.0], [], [0, 0, 0], [1, 1, 1], 0.1, "2", 10)
    with pytest.raises(UsageError, match="--block 1 does not exist"):
        layout.block(1)


def test_labels_keep_the_blocks_own_objects_only(street):
    """Pixels of an object inside a block's cube are never EMPTY (KEEP, or IGNORE where something
    outside the block hides the way); pixels of objects outside it are EMPTY or IGNORE, KEEP only
    where the hull's excess cannot tell (a few rays along the row)."""
    capture, hull = street
    layout = split_scene(capture, hull, 2)
    count = {"own": 0, "own_keep": 0, "other": 0, "other_keep": 0, "other_empty": 0}
    for b in layout.blocks:
        lo, hi = np.asarray(b.lo), np.asarray(b.hi)
        box = Box(lo, hi)
        inside = [k for k, c in enumerate(CENTRES) if (lo + 0.7 <= c).all() and (c <= hi - 0.7).all()]
        outside = [k for k, c in enumerate(CENTRES) if not ((lo - 0.7 <= c).all() and (c <= hi + 0.7).all())]
        assert inside and outside
        for i in b.cameras[::4]:
            f = capture.train[i]
            lab, _, alpha = frame_labels(f, hull, box)
            ids = object_ids(f.c2w, f.width, f.height)
            own = np.isin(ids, inside) & (alpha > 0.99)
            other = np.isin(ids, outside) & (alpha > 0.99)
            assert (lab[own] != EMPTY).all()
            assert (lab[ids == -1] != EMPTY).all()  # background is never an object beyond
            count["own"] += int(own.sum())
            count["own_keep"] += int((lab[own] == KEEP).sum())
            count["other"] += int(other.sum())
            count["other_keep"] += int((lab[other] == KEEP).sum())
            count["other_empty"] += int((lab[other] == EMPTY).sum())
    assert count["own_keep"] > 0.6 * count["own"], count
    assert count["other_keep"] < 0.02 * count["other"], count


def test_ray_labels_cases():
    """Two solid blobs on the x axis, the block's box around the first one only."""
    from nrconvert.blocks.labels import IGNORE, ray_labels
    from nrconvert.blocks.scene import SceneHull

    grid = np.zeros((40, 10, 10), bool)
    grid[8:12, 4:6, 4:6] = True  # x in [-1.6, -1.2]: inside the box
    grid[28:32, 4:6, 4:6] = True  # x in [0.8, 1.2]: beyond it
    hull = SceneHull(np.array([-2.5, -0.5, -0.5]), np.array([1.5, 0.5, 0.5]), grid)
    box = Box(np.array([-2.0, -0.5, -0.5]), np.array([0.0, 0.5, 0.5]))
    o = np.array([[-1.4, 0, 3], [-3, 0, 0], [3, 0, 0], [1.0, 0, 3], [-1.0, 0, 3], [-2.5, 0, 0.45]], np.float32)
    d = np.array([[0, 0, -1], [1, 0, 0], [-1, 0, 0], [0, 0, -1], [0, 0, -1], [3.5, 0, -0.45]], np.float32)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    alpha = np.array([1, 1, 1, 1, 0, 1], np.float32)
    lab = ray_labels(o, d, alpha, hull, box)
    # down onto blob 1 | along x from the left (blob 1 first) | from the right (blob 2 first, outside)
    # | down onto blob 2 (misses the box) | background through the box | across the box, over blob 1,
    # onto blob 2
    assert lab.tolist() == [KEEP, KEEP, IGNORE, IGNORE, KEEP, EMPTY]


def test_clip_slab_splits_exactly_on_the_border():
    sphere = icosphere(4)
    axis = np.array([1.0, 0.0, 0.0])
    left = clip_slab(sphere, axis, [None, 0.2], 0.0)
    right = clip_slab(sphere, axis, [0.2, None], 0.0)
    assert left.vertices[:, 0].max() == pytest.approx(0.2, abs=1e-6)
    assert right.vertices[:, 0].min() == pytest.approx(0.2, abs=1e-6)
    assert left.face_areas().sum() + right.face_areas().sum() == pytest.approx(sphere.face_areas().sum(), rel=1e-5)

    def signed_volume(m: Mesh) -> float:
        p = m.vertices[m.faces].astype(np.float64)
        return float(np.einsum("ij,ij->i", p[:, 0], np.cross(p[:, 1], p[:, 2])).sum() / 6)

    # winding kept: the two halves' signed volumes add up to the whole's
    assert signed_volume(left) + signed_volume(right) == pytest.approx(signed_volume(sphere), rel=1e-5)
    # a skirt makes neighbours overlap by twice its width instead of meeting edge to edge
    skirted = clip_slab(sphere, axis, [None, 0.2], 0.05)
    assert skirted.vertices[:, 0].max() == pytest.approx(0.25, abs=1e-6)


def test_openjd_progress_lines_rise_to_100():
    out = io.StringIO()
    rep = OpenJdReporter(out, ["train", "extract", "bake"] * 2)
    for _ in range(2):
        for stage, total in (("train", 50), ("extract", 10), ("bake", None)):
            rep.start(stage, total)
            for i in range(1, 11):
                rep.update(stage, i * (total or 10) // 10, total or 10)
            rep.end(stage, **({"warning": "Training stopped at its time budget"} if stage == "train" else {}))
    lines = out.getvalue().splitlines()
    assert all(line.startswith(("openjd_progress: ", "openjd_status: ")) for line in lines)
    pct = [int(line.split(": ")[1]) for line in lines if line.startswith("openjd_progress")]
    assert pct == sorted(pct) and pct[0] == 0 and pct[-1] == 100 and len(set(pct)) == len(pct)
    assert "openjd_status: Training field" in lines
    assert lines.count("openjd_status: Warning: Training stopped at its time budget") == 2  # once per block


def test_block_config_shares_the_runs_budgets():
    """N blocks together train, weigh and hold what one field would: each gets 1/N of the steps,
    time, triangles and hash entries and 1/sqrt(N) of the texture side, never below the floors."""
    from nrconvert.blocks.work import MIN_LOG2_TABLE, MIN_TRIANGLES, block_config
    from nrconvert.config import Config

    cfg = Config().replace(steps=3000, time_budget_s=600.0, hash_log2_table=19, max_triangles=90_000,
                           texture_size=2048)
    assert block_config(cfg, 1) == cfg
    b = block_config(cfg, 3)
    assert (b.steps, b.time_budget_s, b.max_triangles) == (1000, 200.0, 30_000)
    assert b.hash_log2_table == 18 and 2 ** b.hash_log2_table * 3 >= 2 ** cfg.hash_log2_table
    assert b.texture_size == 1024  # 2048 / sqrt(3) = 1182: the nearest power of two
    assert block_config(cfg, 4).texture_size == 1024 and block_config(cfg, 16).texture_size == 512
    tiny = block_config(cfg.replace(max_triangles=5000, hash_log2_table=15, texture_size=64), 8)
    assert (tiny.max_triangles, tiny.hash_log2_table, tiny.texture_size) == (MIN_TRIANGLES, MIN_LOG2_TABLE, 64)
