"""Core data the other modules share, and the parent N-panel they hang their sub-panels on.

An imported asset is anchored on an Empty (the asset root): the LOD objects (and capture cameras,
when imported) are its children, so moving the root moves the whole asset, and the root stays
selectable while the LOD switcher hides levels. The root's `nrconvert` group holds what the GLB
said (asset.extras.nrconvert as JSON, the environment .hdr) and the LOD set; each LOD level keeps
its PBR and captured materials so looks can switch without searching the file again. Materials
that carried NRC_neural_material keep its JSON and feature images (`Material.nrconvert`), which
is what the exporter writes back.
"""
from __future__ import annotations

import json

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

LOD_MODES = (
    ("COVERAGE", "Screen coverage", "Pick the level from the projected bounding sphere's share of "
     "the screen against the file's MSFT_screencoverage thresholds"),
    ("DISTANCE", "Camera distance", "Pick the level from the camera's distance to the asset"),
    ("MANUAL", "Manual", "Always show the chosen level"),
)


def _lod_changed(self, context) -> None:
    """Re-run the LOD switcher when a setting changes, so the choice shows at once."""
    if context is None or getattr(context, "scene", None) is None:
        return
    from . import lod  # late: lod imports this module

    lod.update_scene(context.scene)


class NRC_LodLevel(bpy.types.PropertyGroup):
    object: PointerProperty(type=bpy.types.Object, name="Object")
    coverage: FloatProperty(name="Screen coverage", min=0.0, max=1.0, precision=4,
                            description="Shown while the asset covers more than this share of "
                            "the screen (MSFT_screencoverage)", update=_lod_changed)
    distance: FloatProperty(name="Distance", min=0.0, unit="LENGTH", update=_lod_changed,
                            description="Camera distance up to which this level is shown in "
                            "distance mode (0: no limit)")
    pbr_material: PointerProperty(type=bpy.types.Material, name="PBR material")
    captured_material: PointerProperty(type=bpy.types.Material, name="Captured material")


class NRC_Asset(bpy.types.PropertyGroup):
    is_asset: BoolProperty(name="nrconvert asset", default=False)
    source_path: StringProperty(name="Source", subtype="FILE_PATH")
    metadata: StringProperty(name="Metadata", description="asset.extras.nrconvert as JSON")
    environment_path: StringProperty(name="Estimated light", subtype="FILE_PATH")
    lods: CollectionProperty(type=NRC_LodLevel)
    lod_mode: EnumProperty(name="LOD", items=LOD_MODES, default="COVERAGE", update=_lod_changed)
    manual_level: IntProperty(name="Level", min=0, default=0, update=_lod_changed)
    viewport_level: IntProperty(name="Viewport level", default=-1,
                                description="Level shown in the viewport (-1: none)")
    render_level: IntProperty(name="Render level", default=-1,
                              description="Level shown in renders (-1: none)")

    def metadata_dict(self) -> dict:
        """asset.extras.nrconvert as a dict ({} when absent or unreadable)."""
        try:
            value = json.loads(self.metadata or "{}")
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}


class NRC_Material(bpy.types.PropertyGroup):
    role: EnumProperty(name="Role", items=(("NONE", "None", ""), ("PBR", "PBR", ""),
                                           ("CAPTURED", "Captured", "")), default="NONE")
    lod: IntProperty(name="LOD", default=-1)
    neural_json: StringProperty(name="Neural material",
                                description="NRC_neural_material JSON (without texture indices)")
    feature_image_0: PointerProperty(type=bpy.types.Image, name="Features 0-3")
    feature_image_1: PointerProperty(type=bpy.types.Image, name="Features 4-7")
    environment_image: PointerProperty(type=bpy.types.Image, name="Neural environment",
                                       description="NRC_neural_material 1.1's environment (equirect, 8-bit)")
    fallback_image: PointerProperty(type=bpy.types.Image, name="Unlit fallback")


class NRC_Scene(bpy.types.PropertyGroup):
    asset: PointerProperty(type=bpy.types.Object, name="Asset",
                           description="Root of the last imported nrconvert asset")
    metadata: StringProperty(name="Metadata",
                             description="asset.extras.nrconvert of the last imported asset, JSON")
    glb: StringProperty(name="GLB", subtype="FILE_PATH",
                        description="File the last imported asset came from")
    lod_auto: BoolProperty(name="Automatic LOD updates", default=True,
                           description="Switch LODs on frame change, before renders and when the "
                           "camera or an asset moves", update=_lod_changed)
    lod_view: EnumProperty(name="Viewport LOD from", default="CAMERA", update=_lod_changed, items=(
        ("CAMERA", "Scene camera", "The viewport shows what the render camera would get"),
        ("VIEW", "3D view", "The viewport follows the 3D view's own eye (renders keep the camera)")))


def asset_root(obj):
    """The asset root an object belongs to (itself or a parent), or None."""
    while obj is not None:
        group = getattr(obj, "nrconvert", None)
        if group is not None and group.is_asset:
            return obj
        obj = obj.parent
    return None


def active_asset(context):
    """The asset of the active object, else the scene's last imported one (may be None)."""
    root = asset_root(getattr(context, "active_object", None))
    if root is None and context.scene is not None:
        root = asset_root(context.scene.nrconvert.asset)
    return root


class SubPanel:
    """Mixin for every feature's sub-panel: same sidebar tab, nested under NRC_PT_main."""

    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "nrconvert"
    bl_parent_id = "NRC_PT_main"


class NRC_PT_main(bpy.types.Panel):
    """Parent panel: every feature module adds a sub-panel with bl_parent_id = 'NRC_PT_main'."""

    bl_idname = "NRC_PT_main"
    bl_label = "nrconvert"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "nrconvert"

    def draw(self, context):
        layout = self.layout
        root = active_asset(context)
        if root is None:
            layout.label(text="No nrconvert asset", icon="INFO")
            layout.operator("import_scene.nrconvert_glb", icon="IMPORT")
            return
        meta = root.nrconvert.metadata_dict()
        layout.label(text=root.name, icon="OBJECT_DATA")
        if meta.get("version"):
            layout.label(text=f"nrconvert {meta['version']}")


CLASSES = (NRC_LodLevel, NRC_Asset, NRC_Material, NRC_Scene, NRC_PT_main)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Object.nrconvert = PointerProperty(type=NRC_Asset)
    bpy.types.Material.nrconvert = PointerProperty(type=NRC_Material)
    bpy.types.Scene.nrconvert = PointerProperty(type=NRC_Scene)


def unregister() -> None:
    del bpy.types.Scene.nrconvert
    del bpy.types.Material.nrconvert
    del bpy.types.Object.nrconvert
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
