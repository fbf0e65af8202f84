"""Round trip: import (add-on) -> export (add-on) -> import again keeps the neural material (the
same MLP numbers and feature bytes), the LOD chain (MSFT_lod + coverages, only LOD0 a scene
root), asset.extras.nrconvert and the estimated light; the exported file passes the Khronos
validator. The exported GLB is read back with nrconvert's own numpy reader, not the add-on."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import addon_fixtures as fx
from addon_fixtures import pbr_samples, read_glb_json

addon, addon_import, addon_installed, addon_zip, asset_glb = (
    fx.addon, fx.addon_import, fx.addon_installed, fx.addon_zip, fx.asset_glb)

NEURAL = "NRC_neural_material"


def _root(bpy):
    return bpy.context.scene.nrconvert.asset


@pytest.fixture
def round_trip(addon, addon_import, asset_glb, tmp_path: Path):
    bpy = addon.bpy
    asset, src = asset_glb
    assert addon_import(src).result == {"FINISHED"}
    root = _root(bpy)
    first = {lvl.object.name: _world_vertices(lvl.object) for lvl in root.nrconvert.lods}
    bpy.context.view_layer.objects.active = root
    out = tmp_path / "exported" / "again.glb"
    out.parent.mkdir()
    assert bpy.ops.nrconvert.export_glb(filepath=str(out)) == {"FINISHED"}
    assert addon.submodule("exporter").last_messages == []
    return asset, src, out, first


def _world_vertices(obj) -> np.ndarray:
    co = np.empty(len(obj.data.vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", co)
    m = np.array(obj.matrix_world)
    return co.reshape(-1, 3) @ m[:3, :3].T + m[:3, 3]


def test_exported_file_keeps_our_extensions(round_trip):
    from nrconvert.export.reader import lod_primitives, neural_material, read_glb

    asset, src, out, _ = round_trip
    doc, _ = read_glb_json(out)
    src_doc, _ = read_glb_json(src)
    name = pbr_samples().NAME
    assert {NEURAL, "MSFT_lod", "KHR_materials_variants", "KHR_materials_unlit"} <= set(doc["extensionsUsed"])
    assert NEURAL not in doc.get("extensionsRequired", []) and "MSFT_lod" not in doc.get("extensionsRequired", [])
    # LODs: MSFT_lod on LOD0 naming LOD1, LOD2; coverages as written; only LOD0 is a root
    nodes = doc["nodes"]
    lod0 = next(i for i, n in enumerate(nodes) if n["name"] == f"{name}_LOD0")
    assert [nodes[i]["name"] for i in nodes[lod0]["extensions"]["MSFT_lod"]["ids"]] == \
        [f"{name}_LOD1", f"{name}_LOD2"]
    assert nodes[lod0]["extras"]["MSFT_screencoverage"] == pbr_samples().COVERAGE
    assert [nodes[i]["name"] for i in doc["scenes"][doc["scene"]]["nodes"]] == [f"{name}_LOD0"]
    # metadata: as imported, with the light's file renamed after the new GLB and copied there
    meta = doc["asset"]["extras"]["nrconvert"]
    want = json.loads(json.dumps(src_doc["asset"]["extras"]["nrconvert"]))
    want["environment"]["uri"] = "again.hdr"
    assert meta == want
    assert out.with_suffix(".hdr").read_bytes() == src.with_suffix(".hdr").read_bytes()
    # neural material per LOD, read by nrconvert's reference reader: same numbers, same bytes
    glb = read_glb(out)
    prims = lod_primitives(glb)
    assert [p.name for p in prims] == [f"{name}_LOD{k}" for k in range(3)]
    for k, prim in enumerate(prims):
        theirs, ours = prim.neural, asset.lods[k].maps.neural
        assert theirs is not None, f"LOD{k} lost {NEURAL}"
        np.testing.assert_array_equal(theirs.features, ours.features)
        np.testing.assert_array_equal(theirs.scale, ours.scale)
        np.testing.assert_array_equal(theirs.offset, ours.offset)
        for a, b in zip(theirs.layers, ours.layers, strict=True):
            np.testing.assert_array_equal(a.weights, b.weights)
            np.testing.assert_array_equal(a.bias, b.bias)
            assert a.activation == b.activation
        # the fallback: the captured material is still unlit with the photo-lit texture
        np.testing.assert_array_equal(prim.captured_texture, asset.lods[k].maps.captured)
        assert "KHR_materials_unlit" in doc["materials"][prim.captured_material]["extensions"]
        assert neural_material(glb, prim.captured_material) is not None
        np.testing.assert_allclose(prim.positions, lod_positions(asset, k), atol=1e-5)


def lod_positions(asset, k):
    from nrconvert.export.frames import points_to_gltf

    return points_to_gltf(asset.lods[k].mesh.vertices, asset.up_axis)


def test_exported_file_is_valid(round_trip):
    from nrconvert.errors import DependencyError
    from nrconvert.export.validate import validate_glb

    _, _, out, _ = round_trip
    try:
        report = validate_glb(out)
    except DependencyError as exc:
        pytest.skip(f"glTF-Validator unavailable: {exc}")
    assert report.errors == 0, report.format()
    assert set(report.codes("warning")) <= {"UNSUPPORTED_EXTENSION", "MULTIPLE_EXTENSIONS"}, report.format()


def test_reimport_gives_the_same_asset(round_trip, addon, addon_import):
    bpy = addon.bpy
    asset, src, out, first = round_trip
    bpy.ops.wm.read_factory_settings(use_empty=True)
    fx.enable_addon(bpy)
    again = addon_import(out)
    assert again.result == {"FINISHED"} and again.messages == []
    root = _root(bpy)
    levels = list(root.nrconvert.lods)
    assert [round(lvl.coverage, 6) for lvl in levels] == pbr_samples().COVERAGE
    assert [lvl.object.name for lvl in levels] == list(first)
    for k, lvl in enumerate(levels):
        np.testing.assert_allclose(_world_vertices(lvl.object), first[lvl.object.name], atol=1e-5)
        data = lvl.captured_material.nrconvert
        ours = asset.lods[k].maps.neural
        ext = json.loads(data.neural_json)
        np.testing.assert_array_equal(np.float32(ext["layers"][0]["weights"]), ours.layers[0].weights.ravel())
        w, h = data.feature_image_1.size
        px = np.empty(w * h * 4, np.float32)
        data.feature_image_1.pixels.foreach_get(px)
        np.testing.assert_array_equal(np.rint(px * 255).astype(np.uint8).reshape(h, w, 4)[::-1],
                                      ours.features[..., 4:])
        assert lvl.pbr_material is not None and lvl.pbr_material.nrconvert.role == "PBR"
    meta = root.nrconvert.metadata_dict()
    assert meta["environment"]["uri"] == "again.hdr" and meta["name"] == pbr_samples().NAME
    assert bpy.context.scene.world is not None  # the copied .hdr was found beside the new GLB


def test_export_restores_the_scene_and_writes_pbr_as_default(addon, addon_import, asset_glb,
                                                             tmp_path: Path):
    """Showing the captured look (slot = captured material, neural preview on) when exporting:
    the file still has PBR as each primitive's default and captured as the variant, and the
    scene is as it was afterwards (slots, preview, hidden levels)."""
    bpy = addon.bpy
    _, src = asset_glb
    assert addon_import(src).result == {"FINISHED"}
    root = _root(bpy)
    levels = list(root.nrconvert.lods)
    for lvl in levels:
        lvl.object.material_slots[0].material = lvl.captured_material
    before = [(lvl.object.hide_viewport, lvl.object.hide_render) for lvl in levels]
    neural_nodes = addon.submodule("neural_nodes")
    out = tmp_path / "captured_look.glb"
    bpy.context.view_layer.objects.active = levels[0].object
    assert bpy.ops.nrconvert.export_glb(filepath=str(out)) == {"FINISHED"}
    assert [lvl.object.material_slots[0].material for lvl in levels] == [lvl.captured_material for lvl in levels]
    assert [(lvl.object.hide_viewport, lvl.object.hide_render) for lvl in levels] == before
    if neural_nodes is not None:
        for lvl in levels:
            group = neural_nodes.neural_group_node(lvl.captured_material)
            assert any(o.is_linked for o in group.outputs)  # preview back on
    doc, _ = read_glb_json(out)
    for mesh in doc["meshes"]:
        prim = mesh["primitives"][0]
        assert doc["materials"][prim["material"]]["name"].startswith("pbr_LOD")
        (mapping,) = prim["extensions"]["KHR_materials_variants"]["mappings"]
        assert doc["materials"][mapping["material"]]["name"].startswith("captured_LOD")
        assert NEURAL in doc["materials"][mapping["material"]]["extensions"]


def test_export_of_a_moved_asset_keeps_the_root(addon, addon_import, asset_glb, tmp_path: Path):
    """A root away from the origin stays a node (its transform matters); the LODs still switch
    via MSFT_lod and the lower ones are not in the scene tree."""
    bpy = addon.bpy
    _, src = asset_glb
    assert addon_import(src).result == {"FINISHED"}
    root = _root(bpy)
    name = root.name
    root.location = (1.0, 2.0, 3.0)
    bpy.context.view_layer.objects.active = root
    out = tmp_path / "moved.glb"
    assert bpy.ops.nrconvert.export_glb(filepath=str(out)) == {"FINISHED"}
    doc, _ = read_glb_json(out)
    nodes = doc["nodes"]
    roots = [nodes[i] for i in doc["scenes"][0]["nodes"]]
    assert [n["name"] for n in roots] == [name]
    assert [nodes[i]["name"] for i in roots[0]["children"]] == [f"{pbr_samples().NAME}_LOD0"]
    assert np.allclose(roots[0]["translation"], [1.0, 3.0, -2.0])  # Blender (x, y, z) -> glTF (x, z, -y)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    fx.enable_addon(bpy)
    assert addon_import(out).result == {"FINISHED"}
    again = _root(bpy)
    assert again.name == name and len(again.nrconvert.lods) == 3
    assert np.allclose(np.array(again.matrix_world)[:3, 3], [1.0, 2.0, 3.0])
    assert all(lvl.object.parent == again for lvl in again.nrconvert.lods)


@pytest.fixture
def env_round_trip(addon, addon_import, tmp_path: Path):
    """A 3-LOD asset whose materials (nv, sh2_reflected, sh2_reflected_nv) share one environment,
    imported and exported by the add-on."""
    from nrconvert.export.glb import write_glb

    asset = fx.make_asset()
    shared = fx.neural_env_material(size=16, seed=7).environment
    for k, encoding in enumerate(("nv", "sh2_reflected", "sh2_reflected_nv")):
        asset.lods[k].maps.neural = fx.neural_env_material(size=16, seed=40 + k, encoding=encoding)
        asset.lods[k].maps.neural.environment = shared
    src = tmp_path / f"{pbr_samples().NAME}.glb"
    write_glb(asset, src, version=fx.GLB_VERSION)
    imported = addon_import(src)
    assert imported.result == {"FINISHED"} and imported.messages == [], imported.messages
    addon.bpy.context.view_layer.objects.active = _root(addon.bpy)
    out = tmp_path / "exported" / "env.glb"
    out.parent.mkdir()
    assert addon.bpy.ops.nrconvert.export_glb(filepath=str(out)) == {"FINISHED"}
    assert addon.submodule("exporter").last_messages == []
    return asset, src, out


def _environment_textures(path: Path) -> tuple[dict, set, bytes]:
    """(document, indices of the textures the materials' environments name, the first one's PNG)."""
    doc, binary = read_glb_json(path)
    indices = {m["extensions"][NEURAL]["environment"]["texture"]["index"] for m in doc["materials"]
               if "environment" in m.get("extensions", {}).get(NEURAL, {})}
    view = doc["bufferViews"][doc["images"][doc["textures"][min(indices)]["source"]]["bufferView"]]
    start = view.get("byteOffset", 0)
    return doc, indices, binary[start:start + view["byteLength"]]


def test_round_trip_keeps_the_environment(env_round_trip, addon, addon_import):
    """The exported file's environments decode (nrconvert's reader) to the same bytes, scale and
    offset, and the reference decoder gives the same colours as on the original materials; the
    one shared environment texture stays one texture (the same PNG bytes, REPEAT in u, clamped in
    v); the file re-imports without a warning, the LODs sharing one environment image."""
    from nrconvert.export.neural import decode
    from nrconvert.export.reader import lod_primitives, read_glb

    asset, src, out = env_round_trip
    doc, indices, png = _environment_textures(out)
    _, src_indices, src_png = _environment_textures(src)
    assert len(indices) == len(src_indices) == 1 and png == src_png
    sampler = doc["samplers"][doc["textures"][indices.pop()]["sampler"]]
    filters = (sampler["magFilter"], sampler["minFilter"], sampler["wrapS"], sampler["wrapT"])
    assert filters == (9729, 9729, 10497, 33071)  # LINEAR, LINEAR, REPEAT, CLAMP_TO_EDGE
    rng = np.random.default_rng(1)
    uv, dirs, normals = rng.uniform(0, 1, (4000, 2)), rng.normal(size=(4000, 3)), rng.normal(size=(4000, 3))
    prims = lod_primitives(read_glb(out))
    for k, prim in enumerate(prims):
        theirs, ours = prim.neural, asset.lods[k].maps.neural
        assert theirs.view_encoding == ours.view_encoding
        np.testing.assert_array_equal(theirs.environment, ours.environment)
        np.testing.assert_array_equal(theirs.env_scale, ours.env_scale)
        np.testing.assert_array_equal(theirs.env_offset, ours.env_offset)
        np.testing.assert_array_equal(decode(theirs, uv, dirs, normals), decode(ours, uv, dirs, normals))
    bpy = addon.bpy
    bpy.ops.wm.read_factory_settings(use_empty=True)
    fx.enable_addon(bpy)
    again = addon_import(out)
    assert again.result == {"FINISHED"} and again.messages == []
    images = {lvl.captured_material.nrconvert.environment_image for lvl in _root(bpy).nrconvert.lods}
    assert len(images) == 1
    nodes = addon.submodule("neural_nodes")
    for lvl in _root(bpy).nrconvert.lods:
        group = nodes.neural_group_node(lvl.captured_material)
        assert {group.node_tree.nodes[name].image for name in nodes.ENVIRONMENT_NODES} == images


def test_exported_environment_file_is_valid(env_round_trip):
    from nrconvert.errors import DependencyError
    from nrconvert.export.validate import validate_glb

    try:
        report = validate_glb(env_round_trip[2])
    except DependencyError as exc:
        pytest.skip(f"glTF-Validator unavailable: {exc}")
    assert report.errors == 0, report.format()
    assert set(report.codes("warning")) <= {"UNSUPPORTED_EXTENSION", "MULTIPLE_EXTENSIONS"}, report.format()
