"""Render settings, worlds, camera and the render loop inside Blender (imports bpy: subprocess only).

One place sets every render option, so a capture and a later render of an exported GLB under the
same settings differ only in the asset.
"""
from __future__ import annotations

import json
import math
import os
import sys
from contextlib import nullcontext
from typing import Any

import bpy
from mathutils import Matrix


def reset_scene() -> bpy.types.Scene:
    """An empty scene (no default cube, light or camera), whatever startup file is installed."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return bpy.context.scene


def hdri_path(name: str) -> str:
    """Absolute path of a bundled studio-light world, or `name` itself when it is a file path."""
    if os.path.isabs(name):
        return name
    base = os.path.join(bpy.utils.resource_path("LOCAL"), "datafiles", "studiolights", "world")
    path = os.path.join(base, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"HDRI {name!r} not found in {base}")
    return path


def configure_render(scene: bpy.types.Scene, r: dict[str, Any]) -> None:
    """Cycles on CPU, fixed seed, no adaptive sampling, Standard view transform, 8-bit PNG, no dither.

    Adaptive sampling is off so render time and noise do not depend on the content; `Standard`
    instead of AgX so the PNGs are plain sRGB of the scene's radiance.
    """
    scene.render.engine = "CYCLES"
    cyc = scene.cycles
    cyc.device = "CPU"
    cyc.samples = int(r["samples"])
    cyc.use_adaptive_sampling = False
    cyc.seed = int(r["seed"])
    cyc.use_animated_seed = False
    cyc.use_denoising = bool(r["denoise"])
    if r["denoise"]:
        cyc.denoiser = "OPENIMAGEDENOISE"
        cyc.denoising_input_passes = "RGB_ALBEDO_NORMAL"
        cyc.denoising_prefilter = "ACCURATE"
        cyc.denoising_use_gpu = False
    cyc.max_bounces, cyc.diffuse_bounces, cyc.glossy_bounces = 8, 3, 4
    cyc.transmission_bounces, cyc.transparent_max_bounces = 4, 8
    cyc.caustics_reflective = cyc.caustics_refractive = False
    scene.render.resolution_x, scene.render.resolution_y = int(r["w"]), int(r["h"])
    scene.render.resolution_percentage = 100
    scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0
    scene.render.film_transparent = r["background"] == "transparent"
    scene.render.use_persistent_data = True
    scene.render.dither_intensity = 0.0  # dither adds noise to 8-bit output, even to empty background
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    scene.display_settings.display_device = "sRGB"
    img = scene.render.image_settings
    img.file_format = "PNG"
    img.color_depth = "8"
    img.color_mode = "RGBA" if scene.render.film_transparent else "RGB"


def make_world(name: str, spec: dict[str, Any]) -> bpy.types.World:
    """A world lit by an equirectangular HDRI with `strength` and a rotation about world Z."""
    world = bpy.data.worlds.new(name)
    world.use_nodes = True
    nodes, links = world.node_tree.nodes, world.node_tree.links
    bg = nodes["Background"]
    bg.inputs["Strength"].default_value = float(spec.get("strength", 1.0))
    env = nodes.new("ShaderNodeTexEnvironment")
    env.image = bpy.data.images.load(hdri_path(spec["hdri"]), check_existing=True)
    coord = nodes.new("ShaderNodeTexCoord")
    mapping = nodes.new("ShaderNodeMapping")
    mapping.inputs["Rotation"].default_value = (0.0, 0.0, math.radians(float(spec.get("rotation_z", 0.0))))
    links.new(coord.outputs["Generated"], mapping.inputs["Vector"])
    links.new(mapping.outputs["Vector"], env.inputs["Vector"])
    links.new(env.outputs["Color"], bg.inputs["Color"])
    return world


def black_world() -> bpy.types.World:
    """A world that emits nothing: the background of a mask render."""
    world = bpy.data.worlds.new("mask_world")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.0
    return world


def make_camera(scene: bpy.types.Scene, r: dict[str, Any]) -> bpy.types.Object:
    """The render camera: horizontal FOV `camera_angle_x`, principal point offset by `shift`."""
    cam = bpy.data.cameras.new("nrconvert_camera")
    cam.sensor_fit = "HORIZONTAL"
    cam.sensor_width = 36.0
    cam.angle_x = float(r["camera_angle_x"])
    cam.shift_x, cam.shift_y = (float(v) for v in r.get("shift", (0.0, 0.0)))
    cam.clip_start, cam.clip_end = 0.01, 1000.0
    obj = bpy.data.objects.new("nrconvert_camera", cam)
    scene.collection.objects.link(obj)
    scene.camera = obj
    return obj


def _mask_material() -> bpy.types.Material:
    """Pure white emission: over a black world its linear value is exactly the pixel coverage."""
    mat = bpy.data.materials.new("nrconvert_mask")
    mat.use_nodes = True
    nodes = mat.node_tree.nodes
    nodes.clear()
    emit = nodes.new("ShaderNodeEmission")
    emit.inputs["Color"].default_value = (1.0, 1.0, 1.0, 1.0)
    out = nodes.new("ShaderNodeOutputMaterial")
    mat.node_tree.links.new(emit.outputs["Emission"], out.inputs["Surface"])
    return mat


class MaskMode:
    """Switch the scene to coverage-mask rendering and back.

    Raw view transform keeps coverage linear in the PNG; no bounces and no denoising keep it cheap
    and exact; film stays opaque over a black world so the grey value is the alpha.
    """

    def __init__(self, scene: bpy.types.Scene) -> None:
        self.scene = scene
        self.saved: dict[str, Any] = {}
        self.world = black_world()
        self.material = _mask_material()

    def __enter__(self) -> "MaskMode":
        s, c = self.scene, self.scene.cycles
        self.saved = dict(world=s.world, film=s.render.film_transparent, vt=s.view_settings.view_transform,
                          dn=c.use_denoising, mb=c.max_bounces, cm=s.render.image_settings.color_mode)
        s.world = self.world
        s.render.film_transparent = False
        s.view_settings.view_transform = "Raw"
        c.use_denoising = False
        c.max_bounces = 0
        s.render.image_settings.color_mode = "BW"
        bpy.context.view_layer.material_override = self.material
        return self

    def __exit__(self, *exc: object) -> None:
        s, c, v = self.scene, self.scene.cycles, self.saved
        s.world, s.render.film_transparent = v["world"], v["film"]
        s.view_settings.view_transform = v["vt"]
        c.use_denoising, c.max_bounces = v["dn"], v["mb"]
        s.render.image_settings.color_mode = v["cm"]
        bpy.context.view_layer.material_override = None


def render_still(path: str) -> None:
    """Render the scene's camera and save the result with the scene's image settings."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    bpy.ops.render.render(write_still=False)
    bpy.data.images["Render Result"].save_render(filepath=path)


def report_progress(done: int, total: int) -> None:
    """One JSON line per finished view on stdout; the API turns it into a progress callback."""
    sys.stdout.write(json.dumps({"done": done, "total": total}) + "\n")
    sys.stdout.flush()


def render_passes(scene: bpy.types.Scene, camera: bpy.types.Object, worlds: dict[str, bpy.types.World],
                  passes: list[dict[str, Any]]) -> None:
    """Render every view of every pass: `image` passes under their world, `mask` passes as coverage."""
    total = sum(len(p["views"]) for p in passes)
    done = 0
    mask_mode = MaskMode(scene) if any(p["mode"] == "mask" for p in passes) else None
    for p in passes:
        if p["mode"] == "image":
            scene.world = worlds[p["world"]]
        ctx = mask_mode if p["mode"] == "mask" else nullcontext()
        with ctx:
            for view in p["views"]:
                camera.matrix_world = Matrix(view["matrix"])
                render_still(view["path"])
                done += 1
                report_progress(done, total)
