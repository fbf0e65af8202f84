"""The relightable GLB through Blender's own glTF importer: PBR maps wired, `captured` variant
switchable, LOD nodes by name, and the environment .hdr read by Blender's image loader.

The asset is tests/test_export_pbr.py's `make_pbr_asset()` (loaded by path), the one the exporter
tests check with pygltflib and the Khronos validator.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from nrconvert.export.glb import write_glb
from nrconvert.export.validate import validate_glb

REPO = Path(__file__).resolve().parents[1]
TOL = 1e-5


@pytest.fixture(scope="module")
def pbr_samples():
    spec = importlib.util.spec_from_file_location("_nrconvert_pbr_samples",
                                                  REPO / "tests" / "test_export_pbr.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def imported(tmp_path: Path, import_glb, pbr_samples):
    asset = pbr_samples.make_pbr_asset()
    path = tmp_path / "relit.glb"
    write_glb(asset, path, version="0.1.0-blender-test")
    assert validate_glb(path).errors == 0
    objects = import_glb(path)
    return asset, path, {o.name: o for o in objects}, pbr_samples.NAME


def _links_into(tree, node, socket: str) -> list:
    return [link for link in tree.links if link.to_node == node and link.to_socket.name == socket]


def _source(tree, node, socket: str):
    """(node, output socket name) feeding `node.inputs[socket]`; fails when unconnected."""
    links = _links_into(tree, node, socket)
    assert len(links) == 1, f"{socket} of {node.name} is not connected"
    return links[0].from_node, links[0].from_socket.name


def _image_of(node) -> np.ndarray:
    assert node.type == "TEX_IMAGE" and node.image is not None, node.name
    return node.image


def test_lod_nodes_import_by_name(imported, blender_utils, blender_scene):
    asset, _, objects, name = imported
    for k, lod in enumerate(asset.lods):
        obj = objects[f"{name}_LOD{k}"]
        assert obj.type == "MESH"
        assert blender_utils.triangle_count(obj) == lod.mesh.n_triangles
        theirs = blender_utils.world_vertices(obj)
        assert blender_utils.nearest_distances(theirs, lod.mesh.vertices.astype(np.float64)).max() < TOL
    # only LOD0 is in the glTF scene, the lower LODs are nodes outside it (not LOD0's children)
    lower = {f"{name}_LOD1", f"{name}_LOD2"}
    assert all(objects[n].parent is None for n in lower)
    scene_objects = {o.name for o in objects[f"{name}_LOD0"].users_scene[0].collection.objects}
    assert f"{name}_LOD0" in scene_objects
    if blender_scene.app.version >= (4, 5, 0):  # the importer keeps them aside, in "Orphan Nodes"
        assert not lower & scene_objects
    else:  # 4.2's importer links every node into the scene (the add-on's import sorts them out)
        assert lower <= scene_objects


def test_pbr_material_has_every_map_connected(imported, blender_utils):
    asset, _, objects, name = imported
    for k in (0, 1):
        maps = asset.lods[k].maps
        obj = objects[f"{name}_LOD{k}"]
        assert len(obj.material_slots) == 1
        mat = obj.material_slots[0].material
        tree = mat.node_tree
        bsdf = [n for n in tree.nodes if n.type == "BSDF_PRINCIPLED"]
        assert len(bsdf) == 1, [n.type for n in tree.nodes]
        bsdf = bsdf[0]
        output = next(n for n in tree.nodes if n.type == "OUTPUT_MATERIAL" and n.is_active_output)
        assert _source(tree, output, "Surface")[0] == bsdf

        base, _ = _source(tree, bsdf, "Base Color")
        image = _image_of(base)
        assert image.colorspace_settings.name == "sRGB"
        np.testing.assert_array_equal(blender_utils.image_rgb8(image), maps.base_color)

        sep_r, channel_r = _source(tree, bsdf, "Roughness")
        sep_m, channel_m = _source(tree, bsdf, "Metallic")
        assert (channel_r, channel_m) == ("Green", "Blue") and sep_r == sep_m
        orm = _image_of(_source(tree, sep_r, "Color")[0])
        assert orm.colorspace_settings.name == "Non-Color"
        np.testing.assert_array_equal(blender_utils.image_rgb8(orm), maps.orm)

        normal_map, _ = _source(tree, bsdf, "Normal")
        assert normal_map.type == "NORMAL_MAP" and normal_map.space == "TANGENT"
        nimg = _image_of(_source(tree, normal_map, "Color")[0])
        assert nimg.colorspace_settings.name == "Non-Color"
        np.testing.assert_array_equal(blender_utils.image_rgb8(nimg), maps.normal)

        # glTF occlusion has no Principled input: Blender 5.0 keeps it on the
        # "glTF Material Output" node group (what its exporter reads back), fed by the ORM's R
        group = [n for n in tree.nodes if n.type == "GROUP"
                 and n.node_tree.name == "glTF Material Output"]
        assert len(group) == 1
        sep_o, channel_o = _source(tree, group[0], "Occlusion")
        assert channel_o == "Red"
        assert _image_of(_source(tree, sep_o, "Color")[0]) == orm  # the same image datablock
    lod2 = objects[f"{name}_LOD2"].material_slots[0].material
    assert not any(n.type == "NORMAL_MAP" for n in lod2.node_tree.nodes)  # LOD2 has no normal map


def test_captured_variant_switches_the_material(imported, blender_utils, blender_scene):
    bpy = blender_scene
    asset, _, objects, name = imported
    scene = bpy.data.scenes[0]
    variants = scene.gltf2_KHR_materials_variants_variants
    assert [(v.name, v.variant_idx) for v in variants] == [("captured", 0)]
    obj = objects[f"{name}_LOD0"]
    pbr = obj.material_slots[0].material
    assert [d.default_material for d in obj.data.gltf2_variant_default_materials] == [pbr]

    scene.gltf2_active_variant = 0
    assert bpy.ops.scene.gltf2_display_variant() == {"FINISHED"}
    for k in range(3):
        mat = objects[f"{name}_LOD{k}"].material_slots[0].material
        assert mat.name == f"captured_LOD{k}"
        types = {n.type for n in blender_utils.upstream_nodes(mat.node_tree, _output(mat))}
        assert "EMISSION" in types and "BSDF_PRINCIPLED" not in types  # unlit
        images = blender_utils.shader_image_nodes(mat)
        assert len(images) == 1
        np.testing.assert_array_equal(blender_utils.image_rgb8(images[0].image),
                                      asset.lods[k].maps.captured)

    with bpy.context.temp_override(object=obj, active_object=obj):
        assert bpy.ops.scene.gltf2_reset_to_original() == {"FINISHED"}
    assert obj.material_slots[0].material == pbr


def test_blender_reads_the_environment_hdr(imported, blender_scene):
    bpy = blender_scene
    asset, path, _, _ = imported
    image = bpy.data.images.load(str(path.with_suffix(".hdr")))
    src = asset.light.equirect
    assert tuple(image.size) == (src.shape[1], src.shape[0]) and image.is_float
    px = np.empty(image.size[0] * image.size[1] * 4, dtype=np.float32)
    image.pixels.foreach_get(px)
    rgb = px.reshape(src.shape[0], src.shape[1], 4)[::-1, :, :3]  # Blender: bottom row first
    # Blender decodes a mantissa m as m * 2^(e-136) (its bucket's floor; Radiance and read_hdr
    # take the centre, m + 0.5): one RGBE step, 1/128 of the brightest channel at most
    tol = src.max(axis=-1, keepdims=True) / 128.0 + 1e-6
    assert (np.abs(rgb - src) <= tol).all(), np.abs(rgb - src).max()


def _output(material):
    return next(n for n in material.node_tree.nodes
                if n.type == "OUTPUT_MATERIAL" and n.is_active_output)
