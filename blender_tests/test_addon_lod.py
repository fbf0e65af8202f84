"""Automatic LOD switching: the expected level at three camera distances, in the viewport (hide
flags, the evaluated depsgraph) and in Cycles renders (what the pixels show), plus distance and
manual modes.

The asset is make_pbr_asset() (coverage thresholds 0.4 / 0.1 / 0). Each level gets a flat
emission colour (LOD0 red, LOD1 green, LOD2 blue) over a black world, so a render's colour says
which level the renderer saw. The expected level comes from this file's own projection of the
bounding sphere, not from the add-on's code.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import addon_fixtures as fx
from addon_fixtures import pbr_samples

addon, addon_import, addon_installed, addon_zip, asset_glb = (
    fx.addon, fx.addon_import, fx.addon_installed, fx.addon_zip, fx.asset_glb)

DISTANCES = (3.0, 8.0, 20.0)  # camera to bounding-sphere centre
COLOURS = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
RES = (64, 48)


def expected_level(distance: float, radius: float, cam, res=RES) -> int:
    """Level by MSFT_screencoverage: projected sphere area / frame area, horizontal fov from the
    camera's angle (sensor fit AUTO, landscape frame)."""
    tan_x = math.tan(cam.data.angle / 2)
    tan_y = tan_x * res[1] / res[0]
    tan_a = math.tan(math.asin(radius / distance))
    coverage = math.pi * tan_a ** 2 / (4 * tan_x * tan_y)
    return next((k for k, c in enumerate(pbr_samples().COVERAGE) if coverage > c), -1)


def _flat_material(bpy, name, colour):
    mat = bpy.data.materials.new(name)
    if bpy.app.version < (5, 0, 0):  # Blender 5 materials always have nodes (the flag is deprecated)
        mat.use_nodes = True
    tree = mat.node_tree
    tree.nodes.clear()
    emit = tree.nodes.new("ShaderNodeEmission")
    emit.inputs["Color"].default_value = (*colour, 1.0)
    out = tree.nodes.new("ShaderNodeOutputMaterial")
    tree.links.new(emit.outputs[0], out.inputs["Surface"])
    return mat


@pytest.fixture
def lod_scene(addon, addon_import, asset_glb, tmp_path: Path):
    bpy = addon.bpy
    _, path = asset_glb
    assert addon_import(path, use_world=False).result == {"FINISHED"}
    scene = bpy.context.scene
    root = scene.nrconvert.asset
    levels = [lvl.object for lvl in root.nrconvert.lods]
    for k, obj in enumerate(levels):
        obj.material_slots[0].material = _flat_material(bpy, f"flat{k}", COLOURS[k])
    world = bpy.data.worlds.new("black")
    world.color = (0, 0, 0)
    if world.node_tree is not None:
        world.node_tree.nodes["Background"].inputs["Color"].default_value = (0, 0, 0, 1)
    scene.world = world
    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    lod = addon.submodule("lod")
    centre, radius = lod.bounding_sphere(levels[0])
    cam.rotation_euler = (math.pi / 2, 0.0, 0.0)  # looks along +Y
    for frame, d in enumerate(DISTANCES, start=1):
        cam.location = (centre.x, centre.y - d, centre.z)
        cam.keyframe_insert("location", frame=frame)
    scene.frame_start, scene.frame_end = 1, len(DISTANCES)
    r = scene.render
    r.engine = "CYCLES"
    r.resolution_x, r.resolution_y, r.resolution_percentage = *RES, 100
    scene.cycles.samples = 1
    scene.cycles.use_denoising = False
    scene.cycles.device = "CPU"
    r.image_settings.file_format = "PNG"
    r.filepath = str(tmp_path / "frame_")
    return bpy, scene, root, levels, cam, radius, tmp_path


def _shown(levels, flag: str) -> list[int]:
    return [k for k, obj in enumerate(levels) if not getattr(obj, flag)]


def _rendered_level(bpy, path: Path) -> int:
    """Which flat colour dominates the lit pixels of a rendered PNG (-1: nothing lit)."""
    image = bpy.data.images.load(str(path))
    px = np.empty(image.size[0] * image.size[1] * 4, np.float32)
    image.pixels.foreach_get(px)
    bpy.data.images.remove(image)
    rgb = px.reshape(-1, 4)[:, :3]
    lit = rgb[rgb.max(1) > 0.2]
    if len(lit) < 4:
        return -1
    return int(np.argmax(lit.mean(0)))


def test_expected_levels_are_distinct(lod_scene):
    *_, cam, radius, _ = lod_scene
    assert [expected_level(d, radius, cam) for d in DISTANCES] == [0, 1, 2]


def test_viewport_follows_the_camera_on_frame_change(lod_scene):
    bpy, scene, root, levels, cam, radius, _ = lod_scene
    for frame, d in enumerate(DISTANCES, start=1):
        scene.frame_set(frame)
        want = expected_level(d, radius, cam)
        assert _shown(levels, "hide_viewport") == [want], (frame, d)
        assert _shown(levels, "hide_render") == [want]
        assert root.nrconvert.viewport_level == want == root.nrconvert.render_level
        depsgraph = bpy.context.evaluated_depsgraph_get()
        meshes = {o.name for o in depsgraph.objects if o.type == "MESH"}
        assert meshes == {levels[want].name}


def test_still_render_chooses_the_level_itself(lod_scene):
    """F12 after the flags were set wrong on purpose: the add-on re-chooses before the engine
    syncs (render_pre, the render depsgraph's frame change, or the depsgraph update the wrong
    flags cause), so the picture shows the right level."""
    bpy, scene, root, levels, cam, radius, tmp = lod_scene
    for frame, d in enumerate(DISTANCES, start=1):
        scene.frame_set(frame)
        want = expected_level(d, radius, cam)
        for k, obj in enumerate(levels):
            obj.hide_render = k == want  # everything but the right level
        scene.render.filepath = str(tmp / f"still_{frame}.png")
        assert bpy.ops.render.render(write_still=True) == {"FINISHED"}
        assert _shown(levels, "hide_render") == [want]
        assert _rendered_level(bpy, tmp / f"still_{frame}.png") == want, (frame, d)


def test_animation_render_switches_per_frame(lod_scene):
    bpy, scene, root, levels, cam, radius, tmp = lod_scene
    scene.frame_set(len(DISTANCES))  # start from the far level: frame 1 must switch back
    assert bpy.ops.render.render(animation=True) == {"FINISHED"}
    got = [_rendered_level(bpy, tmp / f"frame_{f:04d}.png") for f in range(1, len(DISTANCES) + 1)]
    assert got == [expected_level(d, radius, cam) for d in DISTANCES] == [0, 1, 2]


def test_distance_mode(lod_scene):
    bpy, scene, root, levels, cam, radius, _ = lod_scene
    group = root.nrconvert
    group.lod_mode = "DISTANCE"
    group.lods[0].distance, group.lods[1].distance, group.lods[2].distance = 5.0, 10.0, 0.0
    for frame, want in zip((1, 2, 3), (0, 1, 2)):
        scene.frame_set(frame)
        assert _shown(levels, "hide_viewport") == [want] and _shown(levels, "hide_render") == [want]


def test_manual_mode_and_switching_off(lod_scene):
    bpy, scene, root, levels, cam, radius, _ = lod_scene
    root.nrconvert.lod_mode = "MANUAL"
    root.nrconvert.manual_level = 2
    assert _shown(levels, "hide_viewport") == [2]  # the property update applies it at once
    scene.frame_set(1)  # close camera, but manual wins
    assert _shown(levels, "hide_render") == [2]
    root.nrconvert.lod_mode = "COVERAGE"
    scene.nrconvert.lod_auto = False
    scene.frame_set(3)
    assert _shown(levels, "hide_viewport") == [0]  # switching off keeps the last choice


def test_coverage_rules(addon):
    lod = addon.submodule("lod")
    thresholds = [0.4, 0.1, 0.0]
    assert [lod.level_for_coverage(thresholds, c) for c in (math.inf, 0.41, 0.4, 0.11, 0.1, 1e-6)] \
        == [0, 0, 1, 1, 2, 2]
    assert lod.level_for_coverage([0.4, 0.1, 0.02], 0.01) == -1  # below the last: nothing shown
    assert lod.level_for_distance([5.0, 10.0, 0.0], 4.0) == 0
    assert lod.level_for_distance([5.0, 10.0, 0.0], 50.0) == 2
    # coverage and distance_for_coverage are inverse of each other
    from mathutils import Vector

    view = (Vector((0, 0, 0)), False, 0.36, 0.27)
    for c in (0.9, 0.3, 0.05):
        d = lod.distance_for_coverage(c, 1.5, 0.36, 0.27)
        assert lod.screen_coverage(Vector((0, d, 0)), 1.5, view) == pytest.approx(c, rel=1e-6)
