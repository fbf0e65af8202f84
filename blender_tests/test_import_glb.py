"""Our GLB through Blender's own glTF importer lands where the capture says it is.

Blender is Z-up like the capture frame, and its importer maps glTF (x, y, z) to (x, -z, y): undoing
our Y-up swap exactly. So imported world coordinates must equal the capture-frame input, and the
imported cameras must sit at the capture's c2w. An exporter that forgets the swap still imports
"fine" (DESIGN.md §9) — only these comparisons catch it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nrconvert.export.glb import CAMERAS_NODE, write_glb
from nrconvert.export.validate import validate_glb

TOL = 1e-5  # Blender stores float32


@pytest.fixture
def imported(tmp_path: Path, import_glb, export_samples):
    """The sample asset written by write_glb and imported into an empty Blender scene."""
    asset = export_samples.make_sample_asset()
    path = tmp_path / "sample.glb"
    write_glb(asset, path, version="0.1.0-blender-test")
    assert validate_glb(path).errors == 0
    objects = import_glb(path)
    return asset, {o.name: o for o in objects}


def test_mesh_lands_in_the_capture_frame(imported, blender_utils):
    asset, objects = imported
    mesh_objects = [o for o in objects.values() if o.type == "MESH"]
    assert [o.name for o in mesh_objects] == ["sample_object"]
    obj = mesh_objects[0]
    assert blender_utils.triangle_count(obj) == asset.mesh.n_triangles
    ours = asset.mesh.vertices.astype(np.float64)
    used = ours[np.unique(asset.mesh.faces)]  # the importer drops unreferenced vertices
    theirs = blender_utils.world_vertices(obj)
    assert blender_utils.nearest_distances(theirs, ours).max() < TOL
    assert blender_utils.nearest_distances(used, theirs).max() < TOL
    np.testing.assert_allclose(theirs.min(0), used.min(0), atol=TOL)
    np.testing.assert_allclose(theirs.max(0), used.max(0), atol=TOL)


def test_uvs_map_the_texture_the_same_way(imported, blender_utils):
    """Each imported corner (position, uv) matches one of our vertices with v flipped back."""
    asset, objects = imported
    pos, uv = blender_utils.loop_uvs(objects["sample_object"])
    ours = np.hstack([asset.mesh.vertices, asset.mesh.uvs * [1.0, -1.0] + [0.0, 1.0]])
    assert blender_utils.nearest_distances(np.hstack([pos, uv]), ours).max() < TOL


def test_material_shows_our_texture(imported, blender_utils):
    asset, objects = imported
    obj = objects["sample_object"]
    assert len(obj.material_slots) == 1
    material = obj.material_slots[0].material
    nodes = blender_utils.shader_image_nodes(material)
    assert len(nodes) == 1, [n.name for n in material.node_tree.nodes]
    image = nodes[0].image
    h, w = asset.captured.shape[:2]
    assert tuple(image.size) == (w, h)
    assert image.colorspace_settings.name == "sRGB"
    np.testing.assert_array_equal(blender_utils.image_rgb8(image), asset.captured)
    # KHR_materials_unlit imports as an emission (shadeless) setup, not a lit BSDF.
    types = {n.type for n in blender_utils.upstream_nodes(material.node_tree, _output(material))}
    assert "EMISSION" in types and "BSDF_PRINCIPLED" not in types


def test_cameras_sit_at_the_capture_poses(imported, blender_utils):
    asset, objects = imported
    parent = objects[CAMERAS_NODE]
    assert parent.type == "EMPTY"
    np.testing.assert_allclose(blender_utils.matrix_world(parent), np.eye(4), atol=TOL)
    cameras = sorted((c for c in parent.children if c.type == "CAMERA"), key=lambda c: c.name)
    assert [c.name for c in cameras] == ["000_r_000", "001_r_001"]
    for frame, cam in zip(asset.cameras, cameras):
        np.testing.assert_allclose(blender_utils.matrix_world(cam), frame.c2w, atol=TOL)
        assert cam.data.type == "PERSP"
        assert cam.data.angle_y == pytest.approx(2 * np.arctan(frame.height / (2 * frame.fy)),
                                                 rel=1e-5)


def test_every_camera_sees_the_object(imported, blender_utils):
    """The point of the frame convention: the asset's centre projects inside each photo."""
    asset, objects = imported
    centre = blender_utils.world_vertices(objects["sample_object"]).mean(0)
    for frame in asset.cameras:
        cam = objects[f"{asset.cameras.index(frame):03d}_{frame.image_path.stem}"]
        local = np.linalg.inv(blender_utils.matrix_world(cam)) @ np.append(centre, 1.0)
        assert local[2] < 0  # in front: OpenGL/Blender cameras look down -Z
        u = frame.cx + frame.fx * local[0] / -local[2]
        v = frame.cy - frame.fy * local[1] / -local[2]
        assert 0 <= u < frame.width and 0 <= v < frame.height


def _output(material):
    return next(n for n in material.node_tree.nodes
                if n.type == "OUTPUT_MATERIAL" and n.is_active_output)
