"""rasterize_view interpolates like a GPU: perspective-correct, so an interpolated 3D position
lies on the camera ray through its pixel centre, even on a big triangle steeply tilted in depth."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from nrconvert.capture.model import Frame
from nrconvert.render.raster import project, rasterize_view


def test_interpolated_positions_reproject_to_their_pixel_centres():
    # camera at the origin looking down -Z; a quad from z = -1 (near) to z = -8 (far)
    frame = Frame(Path("x.png"), np.eye(4), fx=60.0, fy=60.0, cx=32.0, cy=32.0, width=64, height=64)
    verts = np.array([[-1.0, -0.5, -1.0], [1.0, -0.5, -1.0], [1.0, 0.5, -8.0], [-1.0, 0.5, -8.0]])
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    frags = rasterize_view(frame, verts, faces)
    hit = frags.tri >= 0
    assert hit.sum() > 500
    pos = (verts[faces[frags.tri[hit]]] * frags.bary[hit][..., None]).sum(1)
    p, _ = project(frame, pos)
    jj, ii = np.nonzero(hit)
    centres = np.stack([ii + 0.5, jj + 0.5], -1)
    assert np.abs(p - centres).max() < 1e-3


def test_a_camera_that_sees_none_of_the_mesh_gets_no_fragments():
    """A long scene's far end: every triangle behind the camera (or back-facing) leaves the
    view empty instead of failing on an empty id list."""
    frame = Frame(Path("x.png"), np.eye(4), fx=60.0, fy=60.0, cx=32.0, cy=32.0, width=64, height=64)
    behind = np.array([[0, 0, 2.0], [1, 0, 2.0], [0, 1, 2.0]], np.float32)  # +z: behind an OpenGL camera
    for cull in (False, True):
        frags = rasterize_view(frame, behind, np.array([[0, 1, 2]]), cull_backfaces=cull)
        assert frags.tri.shape == (64, 64) and (frags.tri == -1).all()


def test_photo_object_pixels_drop_the_silhouette_only_without_a_mask():
    """Without a mask, pixels on the mesh's silhouette (half surface, half whatever is behind) are
    not samples of the surface; the frame's border is not a silhouette; with a mask, its alpha
    decides."""
    from nrconvert.render.raster import photo_object_pixels

    frame = Frame(Path("x.png"), np.eye(4), fx=40.0, fy=40.0, cx=16.0, cy=16.0, width=32, height=32)
    verts = np.array([[-0.25, -0.25, -1.0], [2.0, -0.25, -1.0], [2.0, 0.25, -1.0], [-0.25, 0.25, -1.0]])
    frags = rasterize_view(frame, verts, np.array([[0, 1, 2], [0, 2, 3]]))
    covered = frags.tri >= 0
    kept = photo_object_pixels(frags.tri, None)
    rows, cols = np.nonzero(covered)
    top, bottom, left = rows.min(), rows.max(), cols.min()
    assert not kept[top].any() and not kept[bottom].any() and not kept[:, left].any()  # the silhouette
    assert kept[top + 1:bottom, left + 1:].all()  # the inside, up to the frame's right border
    assert kept[:, -1].sum() == bottom - top - 1  # the quad runs off the frame: its cut edge stays
    alpha = np.zeros((32, 32), np.float32)
    alpha[:, :20] = 1.0
    assert (photo_object_pixels(frags.tri, alpha) == (covered & (alpha > 0.5))).all()
