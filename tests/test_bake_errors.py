"""A surface that covers none of the photos' object pixels stops the bake with a clear error
(exit 5) instead of fitting a material to no samples."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nrconvert.bake.chain import bake_lods
from nrconvert.bake.surface import sphere
from nrconvert.capture.model import Frame
from nrconvert.config import make_config
from nrconvert.errors import ExtractionError
from nrconvert.mesh import vertex_normals

from .test_lod import icosphere


def test_surface_outside_every_photo_is_an_extraction_error(tmp_path: Path):
    image = tmp_path / "r_000.png"
    Image.fromarray(np.full((32, 32, 4), 255, np.uint8)).save(image)
    c2w = np.eye(4)
    c2w[:3, 3] = [0.0, 0.0, -5.0]  # looks along -z, away from the sphere at the origin
    frames = [Frame(image, c2w, fx=30.0, fy=30.0, cx=16.0, cy=16.0, width=32, height=32)]
    mesh = icosphere(2)
    mesh.normals = vertex_normals(mesh.vertices, mesh.faces)
    cfg = make_config("tiny", {"texture_size": "64", "lods": "1"})
    with pytest.raises(ExtractionError, match="covers none of the photos' object pixels") as err:
        bake_lods(None, mesh, frames, sphere(), cfg)
    assert err.value.exit_code == 5
