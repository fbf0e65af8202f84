"""The single field's box on a scene walked along: the masks show the scene runs past the cameras'
meeting point, so the box grows to the scene hull (train.extent); an orbit keeps its box."""
from __future__ import annotations

import logging

import numpy as np

from nrconvert.capture.load import load_capture
from nrconvert.train.data import camera_box, load_rays, object_box
from nrconvert.train.extent import OUTSIDE_SHARE, outside_share

from .street_scene import CENTRES, HALF, RADIUS, write_street


def test_street_box_holds_every_object(tmp_path, caplog):
    capture = load_capture(write_street(tmp_path / "street", n_train=40, n_test=4, size=(80, 60)))
    data = load_rays(capture.train)
    narrow = camera_box(capture.train)
    assert (CENTRES[:, 0] < narrow.lo[0]).any() or (CENTRES[:, 0] > narrow.hi[0]).any()  # the old crop
    assert outside_share(capture.train, data.masks, narrow) > OUTSIDE_SHARE
    with caplog.at_level(logging.WARNING, logger="nrconvert"):
        box, hull = object_box(capture.train, data, 64)
    assert "--blocks auto" in caplog.text
    reach = max(RADIUS, HALF)
    assert (box.lo <= CENTRES.min(0) - reach * 0.9).all() and (box.hi >= CENTRES.max(0) + reach * 0.9).all()
    cells = np.floor((CENTRES - box.lo) / box.size * 64).astype(int)
    assert hull[tuple(cells.T)].all(), "an object's centre was carved out of the hull"
    # and nothing else: the cube's reaches that no camera sees must not start solid
    assert hull.mean() < 0.05, f"{hull.mean():.0%} of the cube starts occupied"


def test_orbit_keeps_the_meeting_point_box(tiny_capture):
    """A capture circling one object: every object pixel lies inside the box's image, so the box
    stays where the cameras' axes meet (and every object capture converts as before)."""
    capture = load_capture(tiny_capture)
    data = load_rays(capture.train)
    narrow = camera_box(capture.train)
    assert outside_share(capture.train, data.masks, narrow) < 0.001
    box, _ = object_box(capture.train, data, 32)
    assert (box.lo >= narrow.lo - 1e-6).all() and (box.hi <= narrow.hi + 1e-6).all()
