"""File › Import › nrconvert asset on a GLB from nrconvert's own exporter (3 LODs with MSFT_lod,
PBR + captured variant with NRC_neural_material, one capture camera, an estimated-light .hdr):
everything the file says ends up in Blender, checked against the file and the source arrays."""
from __future__ import annotations

import json

import numpy as np
import pytest

import addon_fixtures as fx
from addon_fixtures import enable_addon, pbr_samples, read_glb_json

# fixtures (assigned, not imported: a test argument may then share the name without F811)
addon, addon_import, addon_installed, addon_zip, asset_glb = (
    fx.addon, fx.addon_import, fx.addon_installed, fx.addon_zip, fx.asset_glb)


@pytest.fixture
def imported(addon_import, asset_glb):
    asset, path = asset_glb
    out = addon_import(path)
    assert out.result == {"FINISHED"}, out.messages
    assert out.messages == []  # a well-formed file gives no warnings
    return asset, path, out


def _root(bpy):
    root = bpy.context.scene.nrconvert.asset
    assert root is not None and root.nrconvert.is_asset
    return root


def test_lod_set_from_msft_lod(imported, addon, blender_utils):
    bpy = addon.bpy
    asset, _, out = imported
    name = pbr_samples().NAME
    root = _root(bpy)
    assert root.type == "EMPTY" and root.name == name
    levels = list(root.nrconvert.lods)
    assert [lvl.object.name for lvl in levels] == [f"{name}_LOD{k}" for k in range(3)]
    assert [round(lvl.coverage, 6) for lvl in levels] == pbr_samples().COVERAGE
    for k, lvl in enumerate(levels):
        obj = lvl.object
        assert obj.parent == root and obj.users_collection == root.users_collection
        assert blender_utils.triangle_count(obj) == asset.lods[k].mesh.n_triangles
        assert lvl.pbr_material.name == f"pbr_LOD{k}" and lvl.captured_material.name == f"captured_LOD{k}"
        assert lvl.pbr_material.nrconvert.role == "PBR" and lvl.captured_material.nrconvert.lod == k
    assert not [c for c in bpy.data.collections if c.name.startswith("Orphan Nodes")]
    # distances for distance mode grow with the level (0: no limit for the last)
    assert 0 < levels[0].distance < levels[1].distance and levels[2].distance == 0
    # no camera in the scene: LOD0 alone is shown
    assert [lvl.object.hide_viewport for lvl in levels] == [False, True, True]
    assert [lvl.object.hide_render for lvl in levels] == [False, True, True]


def test_metadata_on_root_and_scene(imported, addon):
    bpy = addon.bpy
    _, path, _ = imported
    doc, _ = read_glb_json(path)
    expected = doc["asset"]["extras"]["nrconvert"]
    root = _root(bpy)
    assert root.nrconvert.metadata_dict() == expected
    assert json.loads(bpy.context.scene.nrconvert.metadata) == expected
    assert bpy.context.scene.nrconvert.glb == str(path.resolve())
    assert expected["name"] == root.name and expected["up_axis"] == "z"


def test_estimated_light_becomes_the_world(imported, addon):
    bpy = addon.bpy
    asset, path, _ = imported
    world = bpy.context.scene.world
    assert world is not None and world.name == f"{pbr_samples().NAME} estimated light"
    env = [n for n in world.node_tree.nodes if n.type == "TEX_ENVIRONMENT"]
    assert len(env) == 1 and bpy.path.abspath(env[0].image.filepath) == str(path.with_suffix(".hdr"))
    assert tuple(env[0].image.size) == (asset.light.equirect.shape[1], asset.light.equirect.shape[0])
    mapping = next(n for n in world.node_tree.nodes if n.type == "MAPPING")
    assert np.allclose(tuple(mapping.inputs["Rotation"].default_value), 0.0, atol=1e-6)  # Z-up capture
    bg = next(n for n in world.node_tree.nodes if n.type == "BACKGROUND")
    assert bg.inputs["Color"].links[0].from_node == env[0]
    assert _root(bpy).nrconvert.environment_path == str(path.with_suffix(".hdr"))


def test_world_rotation_for_a_y_up_capture(addon):
    asset_mod = addon.submodule("asset")
    identity = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    rot = np.array(asset_mod.world_rotation({"capture_to_asset": identity, "up_axis": "y"}))
    # Blender's up (+Z) is the capture's up (+Y); Blender's -Y (glTF +Z) is the capture's +Z
    assert np.allclose(rot @ [0, 0, 1], [0, 1, 0]) and np.allclose(rot @ [0, -1, 0], [0, 0, 1])
    z_up = asset_mod.world_rotation({"capture_to_asset": [[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0],
                                                          [0, 0, 0, 1]]})
    assert np.allclose(np.array(z_up), np.eye(3))


def test_capture_cameras_only_on_request(addon, addon_import, asset_glb):
    bpy = addon.bpy
    asset, path = asset_glb
    assert addon_import(path).result == {"FINISHED"}
    assert not [o for o in bpy.data.objects if o.type == "CAMERA"] and not bpy.data.cameras
    bpy.ops.wm.read_factory_settings(use_empty=True)
    enable_addon(bpy)
    out = addon_import(path, import_cameras=True)
    assert out.result == {"FINISHED"}
    cams = [o for o in bpy.data.objects if o.type == "CAMERA"]
    assert [c.name for c in cams] == ["000_r_000"]
    assert cams[0].parent.name == "capture_cameras" and cams[0].parent.parent == _root(bpy)
    bpy.context.view_layer.update()
    # Blender's world frame is the Z-up capture frame: the camera sits where the photo was taken
    assert np.allclose(np.array(cams[0].matrix_world)[:3, 3], asset.cameras[0].c2w[:3, 3], atol=1e-5)
    assert np.allclose(np.array(cams[0].matrix_world)[:3, :3], asset.cameras[0].c2w[:3, :3], atol=1e-5)


def test_neural_material_data_and_preview(imported, addon, blender_utils):
    bpy = addon.bpy
    asset, path, _ = imported
    doc, _ = read_glb_json(path)
    exts = {m["name"]: m["extensions"]["NRC_neural_material"] for m in doc["materials"]
            if "NRC_neural_material" in m.get("extensions", {})}
    neural_nodes = addon.submodule("neural_nodes")
    for k, lvl in enumerate(_root(bpy).nrconvert.lods):
        mat = lvl.captured_material
        data = mat.nrconvert
        ext = dict(exts[mat.name])
        del ext["featureTextures"]
        assert json.loads(data.neural_json) == ext
        features = asset.lods[k].maps.neural.features
        for image, channels in ((data.feature_image_0, slice(0, 4)), (data.feature_image_1, slice(4, 8))):
            assert image.colorspace_settings.name == "Non-Color" and image.packed_file is not None
            w, h = image.size
            px = np.empty(w * h * 4, np.float32)
            image.pixels.foreach_get(px)
            got = np.rint(px * 255).astype(np.uint8).reshape(h, w, 4)[::-1]
            np.testing.assert_array_equal(got, features[..., channels])
        assert data.fallback_image is not None
        np.testing.assert_array_equal(blender_utils.image_rgb8(data.fallback_image), asset.lods[k].maps.captured)
        if neural_nodes is not None:
            assert neural_nodes.neural_group_node(mat) is not None


def test_plain_gltf_import_stays_plain_with_the_addon_enabled(addon, asset_glb):
    bpy = addon.bpy
    _, path = asset_glb
    assert bpy.ops.import_scene.gltf(filepath=str(path)) == {"FINISHED"}
    assert not [o for o in bpy.data.objects if o.nrconvert.is_asset]
    assert not [m for m in bpy.data.materials if m.nrconvert.neural_json]
    assert bpy.context.scene.world is None or "estimated light" not in bpy.context.scene.world.name


def test_two_imports_give_two_assets(addon, addon_import, asset_glb):
    bpy = addon.bpy
    _, path = asset_glb
    assert addon_import(path).result == {"FINISHED"}
    assert addon_import(path).result == {"FINISHED"}
    roots = [o for o in bpy.data.objects if o.nrconvert.is_asset]
    assert len(roots) == 2
    objects = [lvl.object for r in roots for lvl in r.nrconvert.lods]
    assert len(set(objects)) == 6 and all(o.parent in roots for o in objects)
