"""Photos without masks: the visual hull from estimated masks (train.matting) and its votes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nrconvert.capture.model import Frame
from nrconvert.render.rays import Box, frame_rays
from nrconvert.train.data import visual_hull


def _look_at(eye: np.ndarray) -> np.ndarray:
    """c2w of a camera at `eye` looking at the origin (OpenGL: -Z forward, +Y up)."""
    fwd = -eye / np.linalg.norm(eye)
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, -fwd, eye
    return c2w


def _ring(n: int, size: int = 48) -> tuple[list[Frame], list[np.ndarray]]:
    """n cameras around a ball of radius 0.5 at the origin, and its exact silhouettes."""
    frames, masks = [], []
    for a in np.linspace(0, 2 * np.pi, n, endpoint=False):
        eye = np.array([3 * np.cos(a), 3 * np.sin(a), 0.8])
        f = Frame(Path(f"v{a:.2f}.png"), _look_at(eye), fx=60.0, fy=60.0, cx=size / 2, cy=size / 2,
                  width=size, height=size)
        o, d = frame_rays(f)
        t = -(o * d).sum(-1)  # closest approach of each ray to the ball's centre
        masks.append((np.linalg.norm(o + t[..., None] * d, axis=-1) < 0.5).astype(np.float32))
        frames.append(f)
    return frames, masks


def test_votes_keep_what_one_wrong_mask_would_carve():
    frames, masks = _ring(12)
    box = Box(np.full(3, -1.0), np.full(3, 1.0))
    centre = (16, 16, 16)  # the cell at the ball's centre, res 32
    assert visual_hull(frames, masks, box, 32)[centre]
    wrong = [m.copy() for m in masks]
    wrong[0][18:30, 18:30] = 0.0  # one photo calls the middle of the ball background
    assert not visual_hull(frames, wrong, box, 32)[centre]  # a plain hull loses it
    voted = visual_hull(frames, wrong, box, 32, votes=2)
    assert voted[centre]
    outside = (2, 2, 2)  # a corner every view sees as background stays carved
    assert not voted[outside]
    # with votes the hull only grows: every cell of the plain hull of the true masks is kept
    assert (voted >= visual_hull(frames, masks, box, 32)).all()


def test_a_share_of_the_views_keeps_what_a_few_wrong_masks_would_carve():
    frames, masks = _ring(12)
    box = Box(np.full(3, -1.0), np.full(3, 1.0))
    centre = (16, 16, 16)
    wrong = [m.copy() for m in masks]
    for m in wrong[:4]:  # a third of the photos call the middle of the ball background
        m[18:30, 18:30] = 0.0
    assert not visual_hull(frames, wrong, box, 32, votes=3)[centre]  # four votes carve it
    shared = visual_hull(frames, wrong, box, 32, votes=3, share=0.4)
    assert shared[centre] and not shared[2, 2, 2]  # 4 of 12 is under 40 %; the corner still goes
    assert (shared >= visual_hull(frames, masks, box, 32)).all()


def test_skipping_carved_cells_gives_the_hull_of_every_projection():
    """Cells already carved by `votes` views and by `share` of all views are not projected into
    later views: the same hull as projecting every cell into every view, with and without a
    share, for masks with wrong pixels in some views."""
    frames, masks = _ring(12)
    box = Box(np.full(3, -1.0), np.full(3, 1.0))
    wrong = [m.copy() for m in masks]
    wrong[3][10:20, 5:40] = 0.0
    wrong[7][30:44, 20:50] = 1.0
    for votes, share in ((1, 0.0), (2, 0.0), (3, 0.2), (2, 0.5)):
        fast = visual_hull(frames, wrong, box, 40, votes=votes, share=share)
        every = visual_hull(frames, wrong, box, 40, votes=votes, share=share, skip_decided=False)
        assert 0.02 < fast.mean() < 0.5 and (fast == every).all(), (votes, share)


def test_main_part_drops_specks_and_keeps_big_parts():
    from nrconvert.train.matting import main_part

    hull = np.zeros((32, 32, 32), bool)
    hull[8:20, 8:20, 8:20] = True  # the object
    hull[22:28, 8:14, 8:14] = True  # a second part, 12 % of the first: kept
    hull[0, 0, 0:2] = True  # a speck in a corner no camera carved: dropped
    out = main_part(hull)
    assert out[10, 10, 10] and out[24, 10, 10] and not out[0, 0, 0]
    assert out.sum() == hull.sum() - 2


def _opaque_capture(tmp_path: Path, preset: str) -> Path:
    pytest.importorskip("bpy", reason="synth captures need bpy")
    from .conftest import run_cli

    out = tmp_path / f"opaque_{preset}"
    res = run_cli("synth", str(out), "--object", "suzanne", "--preset", preset, "--background", "opaque")
    assert res.returncode == 0, res.stderr
    return out


def test_opaque_capture_gets_its_hull_from_estimated_masks(tmp_path):
    """A real opaque synth capture (48 photos of 160 px, the forest HDRI behind, no alpha): the
    first fit's masks give a hull that holds the ground-truth surface, in a cube tighter than the
    camera layout's."""
    from scipy.ndimage import binary_dilation

    from nrconvert.capture.load import load_capture
    from nrconvert.config import make_config
    from nrconvert.mesh import Mesh
    from nrconvert.metrics.geometry import sample_surface
    from nrconvert.synth.ply import read_ply
    from nrconvert.train.data import load_rays, object_box
    from nrconvert.train.matting import opaque_prior

    out = _opaque_capture(tmp_path, "demo")
    capture = load_capture(out)
    # steps bind, not the clock: the schedules follow whichever binds first, and a busy machine
    # would otherwise give a different (and with 150 steps, sometimes failed) first fit
    cfg = make_config("fast", {"steps": 600, "time_budget_s": 1e6})
    data = load_rays(capture.train)
    assert data.alpha is None
    camera_cube, hull = object_box(capture.train, data, cfg.occupancy_res)
    assert hull is None
    box, hull, sure = opaque_prior(cfg, capture.train, data, camera_cube)
    assert hull is not None and hull.shape == (cfg.occupancy_res,) * 3
    assert (box.size < 0.85 * camera_cube.size).all(), "the cube did not shrink to the estimated hull"
    v, f = read_ply(out / "gt_mesh.ply")
    pts = sample_surface(Mesh(v, f), 4000, seed=0)
    cells = np.floor((pts - box.lo) / box.size * cfg.occupancy_res).astype(int)
    assert ((cells >= 0) & (cells < cfg.occupancy_res)).all(), "the ground truth runs out of the fitted cube"
    held = binary_dilation(hull, iterations=1)[tuple(cells.T)].mean()
    assert held > 0.98, f"the hull holds only {held:.1%} of the ground-truth surface"
    assert hull.mean() < 0.3, "the hull is not carved"
    # the rays whose opacity training pulls to 1 lie on the object (the synth's coverage masks,
    # grown by 2 px for the anti-aliased silhouette), and there are enough of them to matter
    from PIL import Image

    assert sure is not None and sure.dtype == torch.bool and sure.shape == (len(data.rgb),)
    cover = np.concatenate([binary_dilation(np.asarray(Image.open(out / "masks" / "train" / Path(f.image_path).name)) > 127,
                                            iterations=2).reshape(-1) for f in capture.train])
    on_object = cover[sure.numpy()].mean()
    assert on_object > 0.995, f"{1 - on_object:.1%} of the sure rays miss the object"
    assert sure.sum() > 0.2 * cover.sum(), (int(sure.sum()), int(cover.sum()))


def test_masks_that_separate_nothing_fall_back_to_the_sphere(caplog):
    """A first fit that calls every pixel foreground (nothing carved: the hull fills the cube) or
    every pixel background (nothing left) must not shape the field: (the given cube, no hull) and
    a warning; exact silhouettes give a tighter cube holding the ball."""
    import logging

    from nrconvert.train.matting import hull_from_masks

    frames, masks = _ring(12)
    box = Box(np.full(3, -1.0), np.full(3, 1.0))
    for fill in (np.ones_like, np.zeros_like):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="nrconvert"):
            got, hull = hull_from_masks(frames, [fill(m) for m in masks], box, 32, 1)
        assert hull is None and (got.lo == box.lo).all() and (got.hi == box.hi).all()
        assert "training from a sphere" in caplog.text
    got, hull = hull_from_masks(frames, masks, box, 32, 1)
    assert hull is not None and hull.shape == (32,) * 3
    assert (got.size < 0.8 * box.size).all() and (got.size > 1.0).all(), got.size



def test_sure_rays_pull_the_opacity_up():
    """The training loss charges rays marked sure (RayData.sure) for the opacity they miss, with
    cfg.sure_object_weight, and nothing for unmarked ones."""
    from nrconvert.config import make_config
    from nrconvert.train import trainer
    from nrconvert.train.data import RayData

    cfg = make_config("tiny", {"device": "cpu", "sure_object_weight": 0.5})
    tf = trainer.build_field(cfg, Box(np.full(3, -1.0), np.full(3, 1.0)), masked=False, hull=None)
    n = 256
    # rays past the sphere the field starts as (radius 0.3 of the cube): nearly transparent
    o = torch.tensor([0.85, 0.0, 3.0]).expand(n, 3).contiguous()
    d = torch.nn.functional.normalize(torch.randn(n, 3) * 0.01 + torch.tensor([0.0, 0.0, -1.0]), dim=1)
    rays = RayData(o, d, torch.rand(n, 3), None)
    losses = {}
    for name, sure in (("none", None), ("all", torch.ones(n, dtype=torch.bool)), ("off", torch.zeros(n, dtype=torch.bool))):
        torch.manual_seed(0)
        opt = torch.optim.SGD(list(tf.field.parameters()) + list(tf.background.parameters()), lr=0.0)
        rec = trainer._step(tf, RayData(o, d, rays.rgb, None, None, sure), cfg, opt, n, 0, 0.0)
        losses[name] = rec["loss"]
    assert losses["off"] == pytest.approx(losses["none"], rel=1e-6)
    assert losses["all"] > losses["none"] + 0.4  # 0.5 x (1 - opacity)^2 with opacity near 0


def test_sure_rays_survive_a_checkpoint(tmp_path):
    """A resumed opaque run skips the first fit that marked the sure rays: the mid-training
    checkpoint carries them (packed bits) and the resumed data gets them back, for the same rays only."""
    from nrconvert.checkpoint import load_field_state, save_field
    from nrconvert.config import make_config
    from nrconvert.train.data import RayData
    from nrconvert.render.rays import Box
    from nrconvert.train.data import restore_sure, sure_state
    from nrconvert.train.trainer import build_field

    n = 1001  # not a multiple of 8: the packed tail must unpack exactly
    g = torch.Generator().manual_seed(0)
    sure = torch.rand(n, generator=g) < 0.3
    rays = RayData(torch.zeros(n, 3), torch.ones(n, 3), torch.rand(n, 3, generator=g), None, None, None)
    tf = build_field(make_config("tiny", {"device": "cpu"}), Box(np.zeros(3), np.ones(3)), False, None)
    path = tmp_path / "field.partial.pt"
    save_field(path, tf, 10, {"step": 10, **sure_state(sure)})
    state = load_field_state(path)["resume"]
    back = restore_sure(rays, state)
    assert back.sure is not None and torch.equal(back.sure, sure)
    other = RayData(rays.origins[:-1], rays.dirs[:-1], rays.rgb[:-1], None, None, None)
    assert restore_sure(other, state).sure is None  # other rays: the mask would be misaligned
    assert restore_sure(rays, {"step": 10}).sure is None and sure_state(None) == {}
