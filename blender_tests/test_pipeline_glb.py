"""A GLB from the real pipeline (synth → nrconvert, run as subprocesses) imported by Blender."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


def _cli(*args: str) -> None:
    res = subprocess.run([sys.executable, "-m", "nrconvert.cli", *args], capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]


@pytest.fixture(scope="module")
def pipeline_glb(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pipeline")
    _cli("synth", str(root / "cap"), "--object", "suzanne", "--preset", "tiny")
    _cli(str(root / "cap"), "-o", str(root / "scene.glb"), "--preset", "tiny", "--progress", "none")
    from nrconvert.export.validate import validate_glb

    report = validate_glb(root / "scene.glb")
    assert report.errors == 0, report.format()
    return root / "scene.glb"


def test_blender_imports_pipeline_glb(pipeline_glb, import_glb, blender_utils):
    objects = import_glb(pipeline_glb)
    meshes = [o for o in objects if o.type == "MESH"]
    names = sorted(o.name for o in meshes)
    assert [n[-5:] for n in names] == ["_LOD0", "_LOD1"], names  # tiny preset: a 2-level chain
    lod0 = next(o for o in meshes if o.name.endswith("_LOD0"))
    metrics = json.loads(pipeline_glb.with_suffix(".report").joinpath("metrics.json").read_text())
    assert blender_utils.triangle_count(lod0) == metrics["triangles"]
    material = lod0.data.materials[0]
    images = blender_utils.shader_image_nodes(material)
    assert len(images) >= 3, "base colour, ORM and normal map must all feed the shader"
    assert all(tuple(i.image.size) == (256, 256) for i in images)
    rgb = [blender_utils.image_rgb8(i.image) for i in images]
    assert max(x.reshape(-1, 3).std(0).mean() for x in rgb) > 10, "every map is flat"
    meshes = [lod0]
    # Blender turns the Y-up GLB back into the Z-up capture frame: the object sits at the origin
    verts = blender_utils.world_vertices(meshes[0])
    assert np.abs(verts.mean(0)).max() < 0.3
    cams = [o for o in objects if o.type == "CAMERA"]
    assert len(cams) == 20  # 16 train + 4 test capture cameras
    for cam in cams[:3]:
        # every capture camera looks at the object (the origin is in front of it)
        m = blender_utils.matrix_world(cam)
        forward = -m[:3, 2]
        to_origin = -m[:3, 3] / np.linalg.norm(m[:3, 3])
        assert forward @ to_origin > 0.95
