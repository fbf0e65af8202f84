"""Relight: light an imported asset with one of Blender's studio HDRIs, a user HDRI file, or the
light the converter estimated from the photos, with a rotation about world Z and a strength.

Everything lives in one World, `nrconvert_relight`, built exactly like the synth harness's
(converter/synth/_blender_scene.make_world): Texture Coordinate (Generated) -> Mapping (rotation Z)
-> Environment Texture -> Background (strength). So a render of the relightable PBR look under
studio HDRI B here is the same render the relighting benchmark makes. One more Mapping node
turns world directions into the estimated light's capture frame (identity for Z-up captures and
for every other source).

Settings are on the scene (`scene.nrc_relight`); changing any of them rebuilds or updates the
world at once, so the viewport follows the panel. Failures (missing file) are shown in the panel
and reported by the operator, never raised out of a property update.
"""
from __future__ import annotations

import math
import os
from typing import Any

import bpy
from mathutils import Matrix

from .glb_io import read_glb
from .properties import SubPanel, asset_root

WORLD_NAME = "nrconvert_relight"
ROTATION_NODE = "nrc_rotation"
FRAME_NODE = "nrc_frame"
ENV_NODE = "nrc_environment"
SOURCES = (
    ("STUDIO", "Studio HDRI", "One of the HDRIs bundled with Blender (datafiles/studiolights/world)"),
    ("FILE", "File", "An HDRI file of your own (.hdr, .exr)"),
    ("ESTIMATED", "Estimated light", "The light the converter estimated from the photos (<GLB stem>.hdr)"),
)
# glTF is Y-up, Blender Z-up: Blender's importer maps glTF (x, y, z) to Blender (x, -z, y).
GLTF_TO_BLENDER = Matrix(((1, 0, 0), (0, 0, -1), (0, 1, 0)))


# ---------------------------------------------------------------- HDRI sources


def studio_dir() -> str:
    """Blender's bundled studio-light worlds (city, courtyard, forest, ...)."""
    return bpy.utils.system_resource("DATAFILES", path=os.path.join("studiolights", "world")) or ""


def studio_hdris() -> list[str]:
    """File names of the bundled studio HDRIs, sorted."""
    folder = studio_dir()
    if not os.path.isdir(folder):
        return []
    return sorted(f for f in os.listdir(folder) if f.lower().endswith((".exr", ".hdr")))


_STUDIO_ITEMS: list[tuple[str, str, str]] = []  # kept alive: Blender does not copy dynamic enum items


def _studio_items(self: Any, context: Any) -> list[tuple[str, str, str]]:
    _STUDIO_ITEMS[:] = [(f, os.path.splitext(f)[0].title(), f) for f in studio_hdris()] or [
        ("NONE", "None found", "Blender's studio lights folder is empty")]
    return _STUDIO_ITEMS


def _asset(scene: Any) -> Any:
    """The asset whose estimated light to use: the active object's, else the last imported."""
    root = asset_root(getattr(bpy.context, "active_object", None))
    nrc = getattr(scene, "nrconvert", None)
    return root if root is not None else (asset_root(nrc.asset) if nrc is not None else None)


def estimated_light(scene: Any, root: Any = None) -> tuple[str, Matrix]:
    """(path of the estimated-light .hdr, rotation taking Blender world directions to its frame).

    From the asset root the importer made (its `environment_path` and metadata), else from the
    GLB named in the relight settings: its asset.extras.nrconvert.environment.uri, beside it.
    """
    root = root or _asset(scene)
    if root is not None and root.nrconvert.environment_path:
        path = bpy.path.abspath(root.nrconvert.environment_path)
        block, placement = root.nrconvert.metadata_dict(), root.matrix_world
    else:
        glb = bpy.path.abspath(scene.nrc_relight.glb_path)
        if not glb:
            raise ValueError("no imported nrconvert asset with an estimated light, and no GLB chosen")
        block = ((read_glb(glb)[0].get("asset") or {}).get("extras") or {}).get("nrconvert")
        env = block.get("environment") if isinstance(block, dict) else None
        if not isinstance(env, dict) or not env.get("uri"):
            raise ValueError(f"{glb}: no estimated light (asset.extras.nrconvert.environment)")
        path, placement = os.path.join(os.path.dirname(os.path.abspath(glb)), str(env["uri"])), Matrix()
    if not os.path.isfile(path):
        raise ValueError(f"estimated light file not found: {path}")
    return path, _capture_frame(block, placement)


def _unit_columns(m: Matrix) -> Matrix | None:
    for j in range(3):
        norm = math.sqrt(sum(m[i][j] ** 2 for i in range(3)))
        if norm <= 0:
            return None
        for i in range(3):
            m[i][j] /= norm
    return m


def _capture_frame(block: dict, placement: Matrix) -> Matrix:
    """Rotation from Blender world directions to the capture frame the .hdr is written in.

    A capture direction lands in the world as placement . glTF->Blender . capture_to_asset, so
    the lookup is that product transposed (rotation parts only, scale divided out). Identity for
    Z-up captures imported in place.
    """
    env = block.get("environment") if isinstance(block, dict) else None
    if isinstance(env, dict) and env.get("frame", "capture") != "capture":
        return Matrix.Identity(3)
    try:
        c = Matrix([list(map(float, row[:3])) for row in block["capture_to_asset"][:3]])
    except (KeyError, TypeError, ValueError, IndexError):
        c = Matrix.Identity(3)
    c, p = _unit_columns(c), _unit_columns(placement.to_3x3())
    if c is None or p is None:
        return Matrix.Identity(3)
    return (p @ GLTF_TO_BLENDER @ c).transposed()


def hdri_path(scene: Any) -> tuple[str, Matrix]:
    """The image the current settings ask for, and the frame rotation that goes with it."""
    s = scene.nrc_relight
    if s.source == "STUDIO":
        path = os.path.join(studio_dir(), s.studio)
    elif s.source == "FILE":
        path = bpy.path.abspath(s.filepath)
    else:
        return estimated_light(scene)
    if not path or not os.path.isfile(path):
        raise ValueError(f"HDRI file not found: {path or '(none chosen)'}")
    return path, Matrix.Identity(3)


# ---------------------------------------------------------------- the world


def _build_world() -> Any:
    """A new relight world: Generated -> Mapping (rotation) -> Mapping (frame) -> Environment."""
    world = bpy.data.worlds.new(WORLD_NAME)
    if bpy.app.version < (5, 0, 0):  # Blender 5 worlds always use nodes (the flag is deprecated)
        world.use_nodes = True
    nodes, links = world.node_tree.nodes, world.node_tree.links
    bg = next(n for n in nodes if n.type == "BACKGROUND")
    coord = nodes.new("ShaderNodeTexCoord")
    rot = nodes.new("ShaderNodeMapping")
    rot.name = rot.label = ROTATION_NODE
    frame = nodes.new("ShaderNodeMapping")
    frame.name = frame.label = FRAME_NODE
    env = nodes.new("ShaderNodeTexEnvironment")
    env.name = env.label = ENV_NODE
    links.new(coord.outputs["Generated"], rot.inputs["Vector"])
    links.new(rot.outputs["Vector"], frame.inputs["Vector"])
    links.new(frame.outputs["Vector"], env.inputs["Vector"])
    links.new(env.outputs["Color"], bg.inputs["Color"])
    for i, node in enumerate((coord, rot, frame, env)):
        node.location = (-1000 + 250 * i, 300)
    return world


def relight_world() -> Any:
    """The add-on's world, rebuilt if someone deleted one of its nodes."""
    world = bpy.data.worlds.get(WORLD_NAME)
    if world is not None and world.node_tree is not None and all(
            n in world.node_tree.nodes for n in (ROTATION_NODE, FRAME_NODE, ENV_NODE)):
        return world
    if world is not None:
        world.name = WORLD_NAME + ".old"
    return _build_world()


def _background(world: Any) -> Any:
    return next(n for n in world.node_tree.nodes if n.type == "BACKGROUND")


def update_transform(scene: Any) -> None:
    """Rotation and strength only: no image reload, so dragging the sliders stays cheap."""
    world = bpy.data.worlds.get(WORLD_NAME)
    if world is None or world.node_tree is None or ROTATION_NODE not in world.node_tree.nodes:
        return
    s = scene.nrc_relight
    world.node_tree.nodes[ROTATION_NODE].inputs["Rotation"].default_value = (0.0, 0.0, float(s.rotation))
    _background(world).inputs["Strength"].default_value = float(s.strength)


def apply(scene: Any) -> Any:
    """Point the relight world at the chosen HDRI, set rotation and strength, make it the scene's.

    Raises ValueError when the HDRI cannot be found or loaded; the scene's world is then unchanged.
    """
    path, frame = hdri_path(scene)
    try:
        image = bpy.data.images.load(path, check_existing=True)
    except RuntimeError as exc:
        raise ValueError(f"cannot load HDRI {path}: {exc}") from exc
    world = relight_world()
    world.node_tree.nodes[ENV_NODE].image = image
    world.node_tree.nodes[FRAME_NODE].inputs["Rotation"].default_value = frame.to_euler("XYZ")
    scene.world = world
    update_transform(scene)
    scene.nrc_relight.status = f"{os.path.basename(path)}"
    return world


def use_estimated(scene: Any) -> Any:
    """Light the scene with the active asset's estimated light (for the importer and scripts)."""
    scene.nrc_relight["source"] = 2  # ESTIMATED, without the update callback: apply once
    return apply(scene)


# ---------------------------------------------------------------- properties, operator, panel


def _on_source(self: Any, context: Any) -> None:
    """Panel edits apply at once; a missing file shows in the panel instead of raising."""
    scene = self.id_data
    try:
        apply(scene)
    except ValueError as exc:
        self.status = f"Error: {exc}"


def _on_transform(self: Any, context: Any) -> None:
    update_transform(self.id_data)


class NRC_RelightSettings(bpy.types.PropertyGroup):
    source: bpy.props.EnumProperty(name="Light", items=SOURCES, default="STUDIO", update=_on_source)
    studio: bpy.props.EnumProperty(name="HDRI", items=_studio_items, update=_on_source)
    filepath: bpy.props.StringProperty(name="File", subtype="FILE_PATH", update=_on_source)
    glb_path: bpy.props.StringProperty(
        name="Asset GLB", subtype="FILE_PATH",
        description="GLB whose estimated light to use when no imported nrconvert asset is active")
    rotation: bpy.props.FloatProperty(name="Rotation", subtype="ANGLE", unit="ROTATION",
                                      description="Rotation of the light about world Z",
                                      update=_on_transform)
    strength: bpy.props.FloatProperty(name="Strength", default=1.0, min=0.0, soft_max=10.0,
                                      update=_on_transform)
    status: bpy.props.StringProperty(name="Status")


class NRCONVERT_OT_relight_apply(bpy.types.Operator):
    """Light the scene with the chosen HDRI (studio, file or estimated), rotation and strength"""

    bl_idname = "nrconvert.relight_apply"
    bl_label = "Apply Light"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: Any) -> set[str]:
        try:
            apply(context.scene)
        except (ValueError, OSError) as exc:
            self.report({"WARNING"}, str(exc))
            context.scene.nrc_relight.status = f"Error: {exc}"
            return {"CANCELLED"}
        return {"FINISHED"}


class NRC_PT_relight(SubPanel, bpy.types.Panel):
    bl_label = "Relight"
    bl_idname = "NRC_PT_relight"

    def draw(self, context: Any) -> None:
        s = context.scene.nrc_relight
        col = self.layout.column()
        col.prop(s, "source")
        if s.source == "STUDIO":
            col.prop(s, "studio")
        elif s.source == "FILE":
            col.prop(s, "filepath")
        else:
            col.prop(s, "glb_path")
        col.prop(s, "rotation")
        col.prop(s, "strength")
        col.operator(NRCONVERT_OT_relight_apply.bl_idname, icon="WORLD")
        if s.status:
            col.label(text=s.status, icon="ERROR" if s.status.startswith("Error") else "INFO")


_CLASSES = (NRC_RelightSettings, NRCONVERT_OT_relight_apply)


def register() -> None:
    for cls in _CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.nrc_relight = bpy.props.PointerProperty(type=NRC_RelightSettings)
    if hasattr(bpy.types, "NRC_PT_main"):  # the parent panel comes from properties.py
        bpy.utils.register_class(NRC_PT_relight)


def unregister() -> None:
    if NRC_PT_relight.is_registered:
        bpy.utils.unregister_class(NRC_PT_relight)
    del bpy.types.Scene.nrc_relight
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
