"""Look panel, inside real Blender with the installed add-on: captured / PBR / base colour /
normals per asset, checked on the slot materials, their node graphs and rendered pixels, and that
switching back to PBR puts back the very same, unmodified materials."""
from __future__ import annotations

import numpy as np
import pytest
from test_addon_relight import aim_camera, import_asset, object_mask, render, setup_render, show_lod0

pytest_plugins = ("addon_fixtures",)  # fixtures: addon, asset_glb
MODES = ("CAPTURED", "PBR", "BASE_COLOR", "NORMALS")


def srgb_to_linear(c: float) -> float:
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def slots(meshes) -> dict:
    return {o.name: [s.material for s in o.material_slots] for o in meshes}


def signature(mat) -> tuple:
    """A material's node graph: nodes, their images, and links (to see that nothing was edited)."""
    tree = mat.node_tree
    nodes = sorted((n.name, n.bl_idname, getattr(getattr(n, "image", None), "name", None)) for n in tree.nodes)
    links = sorted((lk.from_node.name, lk.from_socket.identifier, lk.to_node.name, lk.to_socket.identifier)
                   for lk in tree.links)
    return tuple(nodes), tuple(links)


def variant_material(obj, slot: int = 0):
    """The `captured` variant material of a slot, read straight from the glTF importer's data."""
    import bpy

    idx = next(v.variant_idx for v in bpy.data.scenes[0].gltf2_KHR_materials_variants_variants
               if v.name == "captured")
    return next(e.material for e in obj.data.gltf2_variant_mesh_data
                if e.material_slot_index == slot and idx in [v.variant.variant_idx for v in e.variants])


def feeding(tree, socket):
    assert socket.is_linked, f"{socket.node.name}.{socket.name} is not linked"
    return socket.links[0].from_node


def emission_of(mat):
    out = next(n for n in mat.node_tree.nodes if n.type == "OUTPUT_MATERIAL" and n.is_active_output)
    emit = feeding(mat.node_tree, out.inputs["Surface"])
    assert emit.type == "EMISSION"
    return emit


def set_look(bpy, root, mode: str) -> set:
    bpy.context.view_layer.objects.active = root
    return bpy.ops.nrconvert.set_look(mode=mode)


def test_modes_switch_and_restore_the_exact_materials(addon, asset_glb):
    bpy = addon.bpy
    asset = import_asset(addon, asset_glb[1])
    pbr = slots(asset.meshes)
    before = {m.name: signature(m) for mats in pbr.values() for m in mats}
    n_materials = len(bpy.data.materials)

    assert set_look(bpy, asset.root, "CAPTURED") == {"FINISHED"}
    for obj in asset.meshes:
        assert obj.material_slots[0].material == variant_material(obj)
        assert obj.material_slots[0].material not in pbr[obj.name]
    assert asset.root.nrc_look == "CAPTURED"

    assert set_look(bpy, asset.root, "BASE_COLOR") == {"FINISHED"}
    for obj in asset.meshes:
        mat, original = obj.material_slots[0].material, pbr[obj.name][0]
        assert mat.get("nrc_look_override") == "BASE_COLOR" and mat != original
        bsdf = next(n for n in original.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
        albedo = feeding(original.node_tree, bsdf.inputs["Base Color"])
        shown = feeding(mat.node_tree, emission_of(mat).inputs["Color"])
        assert shown.type == albedo.type == "TEX_IMAGE" and shown.image == albedo.image

    assert set_look(bpy, asset.root, "NORMALS") == {"FINISHED"}
    for obj in asset.meshes:
        mat, original = obj.material_slots[0].material, pbr[obj.name][0]
        assert mat.get("nrc_look_override") == "NORMALS"
        remap = feeding(mat.node_tree, emission_of(mat).inputs["Color"])
        assert remap.type == "VECT_MATH" and remap.operation == "MULTIPLY_ADD"
        bsdf = next(n for n in original.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
        expected = "NORMAL_MAP" if bsdf.inputs["Normal"].is_linked else "NEW_GEOMETRY"
        assert feeding(mat.node_tree, remap.inputs[0]).type == expected
    assert not [m for m in bpy.data.materials if m.get("nrc_look_override") == "BASE_COLOR"]  # purged

    assert set_look(bpy, asset.root, "PBR") == {"FINISHED"}
    assert slots(asset.meshes) == pbr  # the very same datablocks
    assert {m.name: signature(m) for mats in pbr.values() for m in mats} == before  # unedited
    assert len(bpy.data.materials) == n_materials  # no override left behind
    assert all(o.nrc_look == "PBR" for o in [asset.root, *asset.meshes])


def test_panel_registered(addon):
    panel = getattr(addon.bpy.types, "NRC_PT_looks")
    assert panel.is_registered and panel.bl_parent_id == "NRC_PT_main"


def test_look_property_drives_the_asset(addon, asset_glb):
    asset = import_asset(addon, asset_glb[1])
    pbr = slots(asset.meshes)
    asset.root.nrc_look = "CAPTURED"  # what the enum in a script or a driver does
    assert all(o.material_slots[0].material == variant_material(o) for o in asset.meshes)
    asset.root.nrc_look = "PBR"
    assert slots(asset.meshes) == pbr


def test_looks_are_per_asset(addon, asset_glb):
    bpy = addon.bpy
    first = import_asset(addon, asset_glb[1])
    second = import_asset(addon, asset_glb[1])  # the same file again: names get .001
    assert not set(first.meshes) & set(second.meshes)
    pbr_second = slots(second.meshes)
    assert set_look(bpy, first.root, "NORMALS") == {"FINISHED"}
    assert all(o.nrc_look == "NORMALS" for o in first.meshes)
    assert slots(second.meshes) == pbr_second and second.root.nrc_look == "PBR"


def test_without_a_captured_variant_the_look_stays(addon, asset_glb, tmp_path):
    from addon_fixtures import read_glb_json, write_glb_json

    bpy = addon.bpy
    doc, binary = read_glb_json(asset_glb[1])
    doc.pop("extensions", None)
    doc["extensionsUsed"] = [e for e in doc.get("extensionsUsed", []) if e != "KHR_materials_variants"]
    for mesh in doc["meshes"]:
        for prim in mesh["primitives"]:
            prim.pop("extensions", None)
    path = write_glb_json(tmp_path / "no_variants.glb", doc, binary)
    asset = import_asset(addon, path)
    pbr = slots(asset.meshes)
    assert set_look(bpy, asset.root, "CAPTURED") == {"CANCELLED"}
    assert slots(asset.meshes) == pbr and asset.root.nrc_look == "PBR"
    asset.root.nrc_look = "CAPTURED"  # the enum falls back to PBR instead of half-switching
    assert slots(asset.meshes) == pbr and asset.root.nrc_look == "PBR"
    assert set_look(bpy, asset.root, "BASE_COLOR") == {"FINISHED"}  # the PBR-derived looks still work


@pytest.fixture
def looked(addon, asset_glb, tmp_path):
    """`looked(mode, hdri)`: render of the test asset (LOD0) in look `mode` under a studio HDRI."""
    bpy = addon.bpy
    asset = import_asset(addon, asset_glb[1])
    show_lod0(asset.root)
    setup_render(bpy)
    aim_camera(bpy, asset.root.nrconvert.lods[0].object)

    def _render(mode: str, hdri: str) -> np.ndarray:
        assert set_look(bpy, asset.root, mode) == {"FINISHED"}
        s = bpy.context.scene.nrc_relight
        s.source, s.studio = "STUDIO", hdri
        return render(bpy, tmp_path / f"{mode}_{hdri}.exr")

    return _render


def test_base_color_look_renders_the_albedo_unlit(looked):
    forest = looked("BASE_COLOR", "forest.exr")
    night = looked("BASE_COLOR", "night.exr")
    mask = object_mask(forest)
    np.testing.assert_allclose(night[mask], forest[mask], atol=1e-5)  # unlit: the light does not matter
    # the test albedo's green channel is sRGB 200 everywhere (blender_tests' make_pbr_asset)
    np.testing.assert_allclose(forest[..., 1][mask], srgb_to_linear(200 / 255), atol=0.01)
    pbr_forest = looked("PBR", "forest.exr")
    pbr_night = looked("PBR", "night.exr")
    assert np.abs(pbr_forest - pbr_night)[..., :3][mask].mean() > 0.01  # the lit look does change


def test_normals_look_renders_world_normals(looked):
    img = looked("NORMALS", "forest.exr")
    mask = object_mask(img)
    rows = np.where(mask.any(1))[0]
    h, w = img.shape[:2]
    centre = img[h // 2 - 2:h // 2 + 2, w // 2 - 2:w // 2 + 2, :3].reshape(-1, 3).mean(0)
    # facing the camera (it looks along +Y): normal ~ -Y -> colour ~ (0.5, 0, 0.5), normal map aside
    assert centre[1] < 0.2 and 0.25 < centre[0] < 0.75 and 0.25 < centre[2] < 0.75, centre
    top = img[rows[0]:rows[0] + 3][mask[rows[0]:rows[0] + 3]][:, 2].mean()
    bottom = img[rows[-1] - 2:rows[-1] + 1][mask[rows[-1] - 2:rows[-1] + 1]][:, 2].mean()
    assert top > bottom + 0.3, (top, bottom)  # +Z up top is blue, -Z below is not
    again = looked("PBR", "forest.exr")
    assert np.abs(again - img)[..., :3][mask].mean() > 0.02
