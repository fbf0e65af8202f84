"""Edit panel, inside real Blender with the installed add-on: the crop box and re-decimate are
checked on evaluated triangle counts (modifiers applied by the depsgraph, data untouched), the
colour tweak on rendered pixels in both looks, and removing each edit restores the original."""
from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest_plugins = ("addon_fixtures",)  # fixtures: addon, asset_glb

TWEAK = "NRC Colour Tweak"  # the inserted node's name


def evaluated(bpy, obj) -> SimpleNamespace:
    """Triangle count and world-space triangle centres of the object after its modifiers."""
    dg = bpy.context.evaluated_depsgraph_get()
    ev = obj.evaluated_get(dg)
    me = ev.to_mesh()
    me.calc_loop_triangles()
    co = np.empty(len(me.vertices) * 3, np.float32)
    me.vertices.foreach_get("co", co)
    tri = np.empty(len(me.loop_triangles) * 3, np.int64)
    me.loop_triangles.foreach_get("vertices", tri)
    m = np.array(obj.matrix_world)
    centres = co.reshape(-1, 3)[tri.reshape(-1, 3)].mean(1) @ m[:3, :3].T + m[:3, 3]
    n = len(me.loop_triangles)
    ev.to_mesh_clear()
    return SimpleNamespace(triangles=n, centres=centres)


def signature(mat) -> tuple:
    """Nodes, links and colour defaults of a material's tree (what a removal must restore)."""
    tree = mat.node_tree
    nodes = sorted((n.name, n.bl_idname) for n in tree.nodes)
    links = sorted((lk.from_node.name, lk.from_socket.identifier, lk.to_node.name, lk.to_socket.identifier)
                   for lk in tree.links)
    colours = sorted((n.name, s.identifier, tuple(round(v, 6) for v in s.default_value))
                     for n in tree.nodes for s in n.inputs if s.type == "RGBA")
    return tuple(nodes), tuple(links), tuple(colours)


@pytest.fixture
def asset(addon, asset_glb):
    """The test asset (3 LODs, PBR + captured neural materials) imported, pinned to LOD0."""
    bpy = addon.bpy
    before = set(bpy.data.objects)
    assert bpy.ops.import_scene.nrconvert_glb(filepath=str(asset_glb[1])) == {"FINISHED"}
    roots = [o for o in bpy.data.objects if o not in before and o.nrconvert.is_asset]
    assert len(roots) == 1
    root = roots[0]
    root.nrconvert.lod_mode, root.nrconvert.manual_level = "MANUAL", 0
    levels = [lvl.object for lvl in root.nrconvert.lods]
    assert len(levels) == 3
    bpy.context.view_layer.objects.active = root
    return SimpleNamespace(bpy=bpy, root=root, levels=levels, edit=addon.submodule("edit"),
                           colour=addon.submodule("edit_colour"),
                           looks=addon.submodule("looks"))


def test_crop_box_cuts_every_lod_and_removal_restores(asset):
    bpy, edit, root = asset.bpy, asset.edit, asset.root
    before = [evaluated(bpy, o).triangles for o in asset.levels[:1]]
    raw = [len(o.data.polygons) for o in asset.levels]
    assert bpy.ops.nrconvert.crop_add() == {"FINISHED"}
    box = root.nrc_edit.crop_box
    assert box is not None and box.empty_display_type == "CUBE"
    assert bpy.context.view_layer.objects.active == box
    assert all(o.modifiers[0].name == edit.CROP_MOD for o in asset.levels)
    assert evaluated(bpy, asset.levels[0]).triangles == before[0]  # the box starts around it all
    box.location.x += box.scale.x  # keep the +x half only
    bpy.context.scene.nrconvert.lod_auto = False  # show every level: hidden ones are not evaluated
    for k, obj in enumerate(asset.levels[:2]):
        obj.hide_viewport = False
        cut = evaluated(bpy, obj)
        obj.data.calc_loop_triangles()
        full = len(obj.data.loop_triangles)
        print(f"crop LOD{k}: {full} -> {cut.triangles} triangles")
        assert 0.3 * full < cut.triangles < 0.7 * full, (k, cut.triangles, full)
        lo_x = box.location.x - box.scale.x
        assert cut.centres[:, 0].min() > lo_x - 1e-4
    assert [len(o.data.polygons) for o in asset.levels] == raw  # the mesh data is untouched
    box_name = box.name
    assert asset.edit.anchor(bpy.context) == root  # the box is active: the panel still edits the asset
    assert bpy.ops.nrconvert.crop_remove() == {"FINISHED"}
    assert root.nrc_edit.crop_box is None and box_name not in bpy.data.objects
    assert not any(len(o.modifiers) for o in asset.levels)
    assert evaluated(bpy, asset.levels[0]).triangles == before[0]


def test_rotated_crop_box(asset):
    """The box's rotation counts: a box turned 45 degrees keeps a diamond, not a square."""
    bpy, edit = asset.bpy, asset.edit
    lod0 = asset.levels[0]
    box = edit.add_crop(asset.root)
    full = evaluated(bpy, lod0).triangles
    box.scale.x = box.scale.y = min(box.scale.x, box.scale.y) * 0.5
    square = evaluated(bpy, lod0).triangles
    box.rotation_euler.z = math.pi / 4
    diamond = evaluated(bpy, lod0)
    assert square < full and diamond.triangles != square
    local = (diamond.centres - np.array(box.location)) @ np.array(box.matrix_world.to_3x3().normalized())
    assert np.abs(local[:, :2]).max() <= box.scale.x * 1.001


def test_decimate_the_shown_lod(asset):
    bpy, root = asset.bpy, asset.root
    lod0, lod1 = asset.levels[:2]
    lod0.data.calc_loop_triangles()
    full = len(lod0.data.loop_triangles)
    assert asset.edit.active_lod(root) == lod0
    root.nrc_edit.decimate_ratio = 0.25
    mod = lod0.modifiers.get(asset.edit.DECIMATE_MOD)
    assert mod is not None and mod.type == "DECIMATE" and abs(mod.ratio - 0.25) < 1e-6
    tris = evaluated(bpy, lod0).triangles
    print(f"decimate 0.25: {full} -> {tris} triangles")
    assert 0.2 * full <= tris <= 0.3 * full, (tris, full)
    assert not lod1.modifiers  # only the shown level
    root.nrconvert.manual_level = 1
    assert asset.edit.active_lod(root) == lod1
    root.nrc_edit.decimate_ratio = 1.0  # on LOD1 now: nothing to remove there, LOD0 keeps its own
    assert lod0.modifiers.get(asset.edit.DECIMATE_MOD) is not None
    root.nrconvert.manual_level = 0
    root.nrc_edit.decimate_ratio = 0.99
    root.nrc_edit.decimate_ratio = 1.0
    assert not lod0.modifiers and evaluated(bpy, lod0).triangles == full


# ---------------------------------------------------------------- colour


def setup_render(bpy, root, lod0) -> None:
    from mathutils import Matrix, Vector

    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    c = scene.cycles
    c.device, c.samples, c.seed, c.use_animated_seed = "CPU", 4, 0, False
    c.use_adaptive_sampling = c.use_denoising = False
    scene.render.resolution_x = scene.render.resolution_y = 24
    scene.render.film_transparent = True
    scene.render.image_settings.file_format = "OPEN_EXR"
    scene.render.image_settings.color_depth = "32"
    world = bpy.data.worlds.new("white")  # grey albedo must render grey: no coloured light
    if bpy.app.version < (5, 0, 0):  # Blender 5 worlds always have nodes
        world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (1, 1, 1, 1)
    scene.world = world
    corners = [lod0.matrix_world @ Vector(c) for c in lod0.bound_box]
    centre = sum(corners, Vector()) / 8.0
    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    scene.collection.objects.link(cam)
    cam.matrix_world = Matrix.Translation(centre + Vector((0, -4, 0))) @ Matrix.Rotation(math.pi / 2, 4, "X")
    scene.camera = cam


def render(bpy, path: Path) -> np.ndarray:
    bpy.context.scene.render.filepath = str(path)
    assert bpy.ops.render.render(write_still=True) == {"FINISHED"}
    img = bpy.data.images.load(str(path))
    w, h = img.size
    px = np.empty(w * h * 4, np.float32)
    img.pixels.foreach_get(px)
    bpy.data.images.remove(img)
    return px.reshape(h, w, 4)


@pytest.mark.parametrize("look", ["PBR", "CAPTURED"])
def test_colour_tweak_changes_the_render_and_removal_restores(asset, tmp_path, look):
    bpy, edit, root = asset.bpy, asset.edit, asset.root
    asset.looks.set_asset_look(root, look)
    lod0 = asset.levels[0]
    setup_render(bpy, root, lod0)
    materials = edit.asset_materials(root)
    assert len(materials) >= 6  # PBR + captured per LOD
    original = {m.name: signature(m) for m in materials}
    base = render(bpy, tmp_path / "base.exr")
    mask = base[..., 3] > 0.999
    assert mask.sum() > 50
    spread = lambda img: (img[mask, :3].max(1) - img[mask, :3].min(1)).mean()  # noqa: E731
    assert spread(base) > 0.02, "the test needs a colourful asset"

    root.nrc_edit.saturation = 0.0
    mat = lod0.material_slots[0].material
    targets = asset.colour.colour_targets(mat)
    assert targets and all(t.links[0].from_node.name.startswith(TWEAK) for t in targets)
    grey = render(bpy, tmp_path / "grey.exr")
    assert spread(grey) < 0.15 * spread(base), (spread(grey), spread(base))
    root.nrc_edit.saturation, root.nrc_edit.value = 1.0, 0.5
    dark = render(bpy, tmp_path / "dark.exr")
    ratio = dark[mask, :3].mean() / base[mask, :3].mean()
    print(f"{look}: channel spread {spread(base):.4f} -> {spread(grey):.4f} (saturation 0), "
          f"mean x{ratio:.3f} (value 0.5)")
    assert 0.3 < ratio < 0.8, ratio

    assert bpy.ops.nrconvert.colour_remove() == {"FINISHED"}
    assert {m.name: signature(m) for m in materials} == original
    assert root.nrc_edit.value == 1.0
    again = render(bpy, tmp_path / "again.exr")
    np.testing.assert_array_equal(again, base)


def test_tweak_survives_the_neural_fallback_switch(asset, addon):
    """The neural/fallback switch relinks the Emission colour; a tweak update puts itself back in
    front of whichever source is current, and removal leaves that source linked."""
    edit, root = asset.edit, asset.root
    neural_nodes = addon.submodule("neural_nodes")
    lvl = root.nrconvert.lods[0]
    mat = lvl.captured_material
    assert neural_nodes.neural_group_node(mat) is not None
    root.nrc_edit.hue = 0.6
    emission = asset.colour.colour_targets(mat)[0]
    assert emission.links[0].from_node.name.startswith(TWEAK)
    assert neural_nodes.use_neural(mat, False)  # bypasses the tweak
    assert not emission.links[0].from_node.name.startswith(TWEAK)
    root.nrc_edit.hue = 0.4
    tweak = emission.links[0].from_node
    assert tweak.name.startswith(TWEAK) and abs(tweak.inputs["Hue"].default_value - 0.4) < 1e-6
    assert tweak.inputs["Color"].links[0].from_node.type == "TEX_IMAGE"  # the fallback texture
    edit.remove_colour(root)
    assert emission.links[0].from_node.type == "TEX_IMAGE"
    assert not [n for n in mat.node_tree.nodes if n.name.startswith(TWEAK)]
