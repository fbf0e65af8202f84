"""Malformed files never raise out of File › Import › nrconvert asset: an unreadable file is
CANCELLED with an error report (and nothing imported), bad extension data is FINISHED with a
warning and the fallback (unlit captured texture, LODs by name, default thresholds, no world).

Every case is a doctored copy of a good GLB from nrconvert's exporter (see addon_fixtures)."""
from __future__ import annotations

import copy
import struct
from pathlib import Path

import numpy as np
import pytest

import addon_fixtures as fx
from addon_fixtures import pbr_samples, read_glb_json, write_glb_json

addon, addon_import, addon_installed, addon_zip, asset_glb = (
    fx.addon, fx.addon_import, fx.addon_installed, fx.addon_zip, fx.asset_glb)

NEURAL = "NRC_neural_material"


def _neural_exts(doc):
    return [m["extensions"][NEURAL] for m in doc["materials"] if NEURAL in m.get("extensions", {})]


def _set_all(doc, fn):
    for m in doc["materials"]:
        if NEURAL in m.get("extensions", {}):
            m["extensions"][NEURAL] = fn(m["extensions"][NEURAL])
    return doc


def _lod0(doc):
    return next(n for n in doc["nodes"] if "MSFT_lod" in n.get("extensions", {}))


def _drop_weight(ext):
    ext["layers"][0]["weights"] = ext["layers"][0]["weights"][:-1]
    return ext


def _set(key, value):
    def fn(ext):
        ext[key] = value
        return ext
    return fn


def _corrupt_feature_png(doc, binary):
    binary = bytearray(binary)
    for ext in _neural_exts(doc):
        image = doc["images"][doc["textures"][ext["featureTextures"][1]["index"]]["source"]]
        view = doc["bufferViews"][image["bufferView"]]
        start = view.get("byteOffset", 0)
        binary[start:start + view["byteLength"]] = b"\x89PNG junk" + b"\0" * (view["byteLength"] - 9)
    return doc, bytes(binary)


def _captured_texture_as_features(doc):
    """Feature texture 0 -> the captured RGB texture: not RGBA8 and another size."""
    for m in doc["materials"]:
        if NEURAL in m.get("extensions", {}):
            m["extensions"][NEURAL]["featureTextures"][0] = {
                "index": m["pbrMetallicRoughness"]["baseColorTexture"]["index"]}
    return doc


def _lod_ids(value):
    def fn(doc):
        _lod0(doc)["extensions"]["MSFT_lod"]["ids"] = value
        return doc
    return fn


def _coverage(value):
    def fn(doc):
        _lod0(doc)["extras"]["MSFT_screencoverage"] = value
        return doc
    return fn


def _extras(value):
    def fn(doc):
        doc["asset"]["extras"]["nrconvert"] = value
        return doc
    return fn


def _env_uri(value):
    def fn(doc):
        doc["asset"]["extras"]["nrconvert"]["environment"]["uri"] = value
        return doc
    return fn


def _bad_accessor(doc):
    doc["meshes"][0]["primitives"][0]["attributes"]["POSITION"] = 999
    return doc


UNREADABLE = {
    "truncated": lambda data: data[:len(data) // 2],
    "not_a_glb": lambda data: b"this is not a GLB file at all" * 4,
    "empty": lambda data: b"",
    "json_garbage": lambda data: struct.pack("<4sII", b"glTF", 2, 32) + struct.pack("<I4s", 12, b"JSON")
    + b"{not json!!}",
    "json_not_an_object": lambda data: struct.pack("<4sII", b"glTF", 2, 24) + struct.pack("<I4s", 4, b"JSON")
    + b"[12]",
}

BAD_NEURAL = {
    "extension_not_an_object": lambda ext: "oops",
    "layers_missing": _set("layers", None),
    "wrong_weight_count": _drop_weight,
    "unknown_activation": lambda ext: (ext["layers"][1].update(activation="swish"), ext)[1],
    "unknown_encoding": _set("viewEncoding", "sh9"),
    "feature_textures_missing": _set("featureTextures", [{"index": 999}, {"index": 1000}]),
    "one_feature_texture": lambda ext: (ext.update(featureTextures=ext["featureTextures"][:1]), ext)[1],
    "scale_too_short": lambda ext: (ext.update(featureScale=ext["featureScale"][:5]), ext)[1],
}


@pytest.fixture
def good(asset_glb):
    asset, path = asset_glb
    doc, binary = read_glb_json(path)
    return asset, path, doc, binary


def _write(path: Path, name: str, doc, binary) -> Path:
    return write_glb_json(path.with_name(f"{name}.glb"), doc, binary)


@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_unreadable_file_is_cancelled_with_an_error(case, good, addon, addon_import):
    _, path, _, _ = good
    bad = path.with_name(f"{case}.glb")
    bad.write_bytes(UNREADABLE[case](path.read_bytes()))
    out = addon_import(bad)
    assert out.result == {"CANCELLED"}
    assert [level for level, _ in out.messages] == ["ERROR"], out.messages
    assert out.objects == {}


def test_missing_file_is_cancelled(good, addon, addon_import):
    out = addon_import(good[1].with_name("nope.glb"))
    assert out.result == {"CANCELLED"} and out.messages[0][0] == "ERROR"


def test_file_blenders_importer_rejects_never_raises(good, addon, addon_import):
    _, path, doc, binary = good
    out = addon_import(_write(path, "bad_accessor", _bad_accessor(doc), binary))
    assert out.result in ({"CANCELLED"}, {"FINISHED"})
    if out.result == {"CANCELLED"}:
        assert out.messages and out.messages[-1][0] == "ERROR"


def _assert_unlit_fallback(bpy, asset, blender_utils, neural_nodes):
    root = bpy.context.scene.nrconvert.asset
    assert len(root.nrconvert.lods) == 3
    for k, lvl in enumerate(root.nrconvert.lods):
        mat = lvl.captured_material
        assert mat.nrconvert.neural_json == "" and mat.nrconvert.feature_image_0 is None
        if neural_nodes is not None:
            assert neural_nodes.neural_group_node(mat) is None
        images = blender_utils.shader_image_nodes(mat)
        assert len(images) == 1
        np.testing.assert_array_equal(blender_utils.image_rgb8(images[0].image), asset.lods[k].maps.captured)
    assert not [im for im in bpy.data.images if "_features" in im.name]  # no half-made leftovers


@pytest.mark.parametrize("case", sorted(BAD_NEURAL))
def test_bad_neural_extension_warns_and_falls_back(case, good, addon, addon_import, blender_utils):
    asset, path, doc, binary = good
    out = addon_import(_write(path, case, _set_all(copy.deepcopy(doc), BAD_NEURAL[case]), binary))
    assert out.result == {"FINISHED"}
    warnings = [text for level, text in out.messages if level == "WARNING"]
    assert len(warnings) == 3 and all(NEURAL in w for w in warnings), out.messages
    _assert_unlit_fallback(addon.bpy, asset, blender_utils, addon.submodule("neural_nodes"))


@pytest.mark.parametrize("case", ["corrupt_png", "captured_texture_as_features"])
def test_bad_feature_textures_warn_and_fall_back(case, good, addon, addon_import, blender_utils):
    asset, path, doc, binary = good
    if case == "corrupt_png":
        doc, binary = _corrupt_feature_png(doc, binary)
    else:
        doc = _captured_texture_as_features(doc)
    out = addon_import(_write(path, case, doc, binary))
    assert out.result == {"FINISHED"}
    warnings = [text for level, text in out.messages if level == "WARNING"]
    assert len(warnings) == 3 and all(NEURAL in w for w in warnings), out.messages
    _assert_unlit_fallback(addon.bpy, asset, blender_utils, addon.submodule("neural_nodes"))


@pytest.mark.parametrize("ids", [[99, 100], ["one", 2], None, [1, 1], "x"])
def test_bad_msft_lod_ids_fall_back_to_node_names(ids, good, addon, addon_import):
    _, path, doc, binary = good
    out = addon_import(_write(path, "bad_ids", _lod_ids(ids)(doc), binary))
    assert out.result == {"FINISHED"}
    assert any(level == "WARNING" and "MSFT_lod" in text for level, text in out.messages), out.messages
    root = addon.bpy.context.scene.nrconvert.asset
    name = pbr_samples().NAME
    assert [lvl.object.name for lvl in root.nrconvert.lods] == [f"{name}_LOD{k}" for k in range(3)]
    assert [round(lvl.coverage, 6) for lvl in root.nrconvert.lods] == pbr_samples().COVERAGE


@pytest.mark.parametrize("coverage", [[0.1, 0.4, 0.0], [0.4, 0.1], [0.4, "a", 0.0], [2.0, 0.1, 0.0], None])
def test_bad_screen_coverage_uses_defaults(coverage, good, addon, addon_import):
    _, path, doc, binary = good
    out = addon_import(_write(path, "bad_cov", _coverage(coverage)(doc), binary))
    assert out.result == {"FINISHED"}
    assert any("MSFT_screencoverage" in text for _, text in out.messages), out.messages
    root = addon.bpy.context.scene.nrconvert.asset
    cov = [lvl.coverage for lvl in root.nrconvert.lods]
    assert len(cov) == 3 and cov[0] > cov[1] > cov[2] == 0.0


def test_missing_hdr_warns_and_makes_no_world(good, addon, addon_import):
    _, path, _, _ = good
    path.with_suffix(".hdr").unlink()
    out = addon_import(path)
    assert out.result == {"FINISHED"}
    assert [level for level, _ in out.messages] == ["WARNING"] and ".hdr" in out.messages[0][1]
    world = addon.bpy.context.scene.world
    assert world is None or "estimated light" not in world.name
    assert len(addon.bpy.context.scene.nrconvert.asset.nrconvert.lods) == 3


@pytest.mark.parametrize("uri", ["../../etc/passwd", "/abs/path.hdr", 7, ""])
def test_environment_uri_outside_the_folder_is_refused(uri, good, addon, addon_import):
    _, path, doc, binary = good
    out = addon_import(_write(path, "bad_uri", _env_uri(uri)(doc), binary))
    assert out.result == {"FINISHED"}
    assert [level for level, _ in out.messages] == ["WARNING"], out.messages
    assert addon.bpy.context.scene.world is None or "estimated" not in addon.bpy.context.scene.world.name


@pytest.mark.parametrize("extras", ["not an object", [1, 2]])
def test_bad_asset_extras_warn(extras, good, addon, addon_import):
    _, path, doc, binary = good
    out = addon_import(_write(path, "bad_extras", _extras(extras)(doc), binary))
    assert out.result == {"FINISHED"}
    assert any("asset.extras.nrconvert" in text for _, text in out.messages), out.messages
    root = addon.bpy.context.scene.nrconvert.asset
    assert root.nrconvert.metadata_dict() == {} and len(root.nrconvert.lods) == 3


def test_plain_gltf_without_our_data_imports_with_a_notice(good, addon, addon_import):
    """A GLB no extension of ours: one mesh, no extras -> one-level asset, a warning, no raise."""
    _, path, doc, binary = good
    doc = copy.deepcopy(doc)
    del doc["asset"]["extras"]
    for node in doc["nodes"]:
        node.pop("extensions", None)
        node.pop("extras", None)
        node["name"] = node["name"].replace("_LOD", "_level")
    out = addon_import(_write(path, "plain", doc, binary))
    assert out.result == {"FINISHED"}
    root = addon.bpy.context.scene.nrconvert.asset
    assert len(root.nrconvert.lods) == 1
