"""Edit an imported asset without destroying it: crop box, re-decimate, colour tweaks.

Everything is a modifier or an inserted node, so the imported data stays as the GLB had it and
each edit can be tuned or removed later:

* Crop box: an Empty (cube display) whose box drives a geometry-nodes modifier on every LOD mesh
  of the asset; faces whose centre lies outside the box are dropped (in the modifier's result).
* Re-decimate: a Decimate (collapse) modifier with a ratio on the LOD shown in the viewport.
* Colour tweaks: a node group (Hue/Saturation/Value, then Brightness/Contrast) inserted in front
  of the colour that reaches the Material Output: the Principled BSDF's Base Color (PBR look)
  and the unlit Emission's Color (captured look, neural or texture), in every material of the
  asset. Removing it links the colour source straight back, restoring the original node tree
  (edit_colour.py).
"""
from __future__ import annotations

from typing import Any

import bpy
from bpy.props import FloatProperty, PointerProperty
from mathutils import Vector

from .edit_colour import TWEAK_INPUTS, apply_tweaks, drop_unused_group, remove_tweaks
from .properties import SubPanel, active_asset, asset_root

CROP_GROUP, CROP_MOD, DECIMATE_MOD = "NRC Crop Box", "NRC Crop", "NRC Decimate"


# ---------------------------------------------------------------- which data an edit touches


def anchor(context: Any) -> Any:
    """The object edits hang their settings on: the active asset's root, else the active object."""
    return active_asset(context) or getattr(context, "active_object", None)


def asset_meshes(obj: Any) -> list[Any]:
    """Mesh objects of the asset `obj` belongs to (every LOD), else `obj` and its children."""
    root = asset_root(obj)
    if root is not None:
        family = {lvl.object for lvl in root.nrconvert.lods if lvl.object is not None}
        family |= set(root.children_recursive)
    else:
        family = {obj, *obj.children_recursive}
    return sorted((o for o in family if o.type == "MESH"), key=lambda o: o.name)


def active_lod(obj: Any) -> Any:
    """The level the viewport shows (the LOD switcher's choice), else the active mesh itself."""
    root = asset_root(obj)
    if root is not None:
        levels = [lvl.object for lvl in root.nrconvert.lods if lvl.object is not None]
        k = root.nrconvert.viewport_level
        if 0 <= k < len(levels):
            return levels[k]
        shown = [o for o in levels if not o.hide_viewport]
        if shown or levels:
            return (shown or levels)[0]
    return obj if obj is not None and obj.type == "MESH" else None


def asset_materials(obj: Any) -> list[Any]:
    """Every material of the asset: slots, the glTF variants' materials, the LOD records."""
    found: list[Any] = []
    for o in asset_meshes(obj):
        found += [s.material for s in o.material_slots]
        found += [e.material for e in getattr(o.data, "gltf2_variant_mesh_data", ())]
        found += [d.default_material for d in getattr(o.data, "gltf2_variant_default_materials", ())]
    root = asset_root(obj)
    for lvl in root.nrconvert.lods if root is not None else ():
        found += [lvl.pbr_material, lvl.captured_material]
    out: list[Any] = []
    for m in found:
        if m is not None and m.node_tree is not None and m not in out:
            out.append(m)
    return out


# ---------------------------------------------------------------- crop box


def crop_group() -> Any:
    """Geometry nodes: delete faces whose centre is outside the Box object's unit cube."""
    ng = bpy.data.node_groups.get(CROP_GROUP)
    if ng is not None and ng.bl_idname == "GeometryNodeTree":
        return ng
    ng = bpy.data.node_groups.new(CROP_GROUP, "GeometryNodeTree")
    ng.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    ng.interface.new_socket("Box", in_out="INPUT", socket_type="NodeSocketObject")
    ng.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    n, link = ng.nodes, ng.links.new
    gin, gout = n.new("NodeGroupInput"), n.new("NodeGroupOutput")
    info = n.new("GeometryNodeObjectInfo")
    info.transform_space = "RELATIVE"  # the box in the modified object's space
    invert, point = n.new("FunctionNodeInvertMatrix"), n.new("FunctionNodeTransformPoint")
    absolute = n.new("ShaderNodeVectorMath")
    absolute.operation = "ABSOLUTE"
    xyz, m1, m2 = n.new("ShaderNodeSeparateXYZ"), n.new("ShaderNodeMath"), n.new("ShaderNodeMath")
    m1.operation = m2.operation = "MAXIMUM"
    outside = n.new("FunctionNodeCompare")
    outside.data_type, outside.operation = "FLOAT", "GREATER_THAN"
    outside.inputs[1].default_value = 1.0
    delete = n.new("GeometryNodeDeleteGeometry")
    delete.domain = "FACE"  # the selection is read on faces: Position is the face centre
    link(gin.outputs["Box"], info.inputs["Object"])
    link(info.outputs["Transform"], invert.inputs["Matrix"])
    link(n.new("GeometryNodeInputPosition").outputs["Position"], point.inputs["Vector"])
    link(invert.outputs["Matrix"], point.inputs["Transform"])
    link(point.outputs["Vector"], absolute.inputs[0])
    link(absolute.outputs["Vector"], xyz.inputs["Vector"])
    link(xyz.outputs["X"], m1.inputs[0])
    link(xyz.outputs["Y"], m1.inputs[1])
    link(m1.outputs["Value"], m2.inputs[0])
    link(xyz.outputs["Z"], m2.inputs[1])
    link(m2.outputs["Value"], outside.inputs[0])
    link(gin.outputs["Geometry"], delete.inputs["Geometry"])
    link(outside.outputs["Result"], delete.inputs["Selection"])
    link(delete.outputs["Geometry"], gout.inputs["Geometry"])
    for i, node in enumerate(ng.nodes):
        node.location = (200 * i - 1200, 0)
    return ng


def world_bounds(objects: list[Any]) -> tuple[Vector, Vector]:
    pts = [o.matrix_world @ Vector(c) for o in objects for c in o.bound_box]
    lo = Vector((min(p.x for p in pts), min(p.y for p in pts), min(p.z for p in pts)))
    hi = Vector((max(p.x for p in pts), max(p.y for p in pts), max(p.z for p in pts)))
    return lo, hi


def add_crop(obj: Any, context: Any = None) -> Any:
    """Crop every LOD mesh of `obj`'s asset by a new box (around the asset, so nothing is cut
    until the box is moved or scaled); returns the box Empty."""
    meshes = asset_meshes(obj)
    if not meshes:
        raise ValueError(f"{obj.name} has no meshes to crop")
    holder = asset_root(obj) or obj
    remove_crop(holder)
    lo, hi = world_bounds(meshes)
    box = bpy.data.objects.new(f"{holder.name} crop box", None)
    box.empty_display_type, box.empty_display_size = "CUBE", 1.0
    box.location = (lo + hi) / 2
    box.scale = [max((h - l) / 2 * 1.02, 1e-4) for l, h in zip(lo, hi)]
    collection = holder.users_collection[0] if holder.users_collection else bpy.context.scene.collection
    collection.objects.link(box)
    box.parent = holder  # moves with the asset, and the panel still finds the asset from the box
    box.matrix_parent_inverse = holder.matrix_world.inverted()
    group = crop_group()
    socket = next(s.identifier for s in group.interface.items_tree if s.name == "Box")
    for m in meshes:
        mod = m.modifiers.new(CROP_MOD, "NODES")
        mod.node_group = group
        mod[socket] = box
        m.modifiers.move(len(m.modifiers) - 1, 0)  # crop first, decimate what is left
    holder.nrc_edit.crop_box = box
    return box


def remove_crop(obj: Any) -> None:
    """Drop the crop modifiers of the asset and its box."""
    holder = asset_root(obj) or obj
    for m in asset_meshes(holder):
        for mod in [md for md in m.modifiers if md.name.startswith(CROP_MOD)]:
            m.modifiers.remove(mod)
    box = holder.nrc_edit.crop_box
    if box is not None:
        holder.nrc_edit.crop_box = None
        bpy.data.objects.remove(box)


# ---------------------------------------------------------------- re-decimate


def set_decimate(obj: Any, ratio: float) -> Any:
    """Collapse-decimate the asset's shown LOD to `ratio` of its triangles (1: remove)."""
    target = active_lod(obj)
    if target is None:
        raise ValueError("no LOD mesh to decimate")
    mod = target.modifiers.get(DECIMATE_MOD)
    if ratio >= 1.0:
        if mod is not None:
            target.modifiers.remove(mod)
        return None
    if mod is None:
        mod = target.modifiers.new(DECIMATE_MOD, "DECIMATE")
        mod.decimate_type = "COLLAPSE"
    mod.ratio = max(ratio, 0.0)
    return mod


# ---------------------------------------------------------------- colour tweaks


def apply_colour(obj: Any) -> int:
    """Insert or update the colour tweak in every material of `obj`'s asset with the settings
    on the asset root (or `obj`); returns how many colour inputs it drives."""
    holder = asset_root(obj) or obj
    values = {name: getattr(holder.nrc_edit, name.lower()) for name, *_ in TWEAK_INPUTS}
    return apply_tweaks(asset_materials(holder), values)


def remove_colour(obj: Any) -> int:
    """Remove the colour tweak from the whole asset and reset its settings."""
    holder = asset_root(obj) or obj
    removed = sum(remove_tweaks(m) for m in asset_materials(holder))
    _busy["colour"] = True
    try:
        for name, default, *_ in TWEAK_INPUTS:
            setattr(holder.nrc_edit, name.lower(), default)
    finally:
        _busy["colour"] = False
    drop_unused_group()
    return removed


# ---------------------------------------------------------------- settings and UI

_busy = {"colour": False}


def _on_colour(self: Any, context: Any) -> None:
    if not _busy["colour"]:
        apply_colour(self.id_data)


def _on_decimate(self: Any, context: Any) -> None:
    try:
        set_decimate(self.id_data, self.decimate_ratio)
    except ValueError as exc:
        print(f"nrconvert: {exc}")


def _colour_prop(name: str, default: float, lo: float, hi: float) -> Any:
    return FloatProperty(name=name, default=default, min=lo, max=hi, update=_on_colour,
                         description=f"{name} of the asset's base colour and captured look")


class NRC_EditSettings(bpy.types.PropertyGroup):
    crop_box: PointerProperty(type=bpy.types.Object, name="Crop box")
    decimate_ratio: FloatProperty(name="Decimate", default=1.0, min=0.0, max=1.0, subtype="FACTOR",
                                  update=_on_decimate,
                                  description="Share of the shown LOD's triangles to keep (1: all)")
    hue: _colour_prop("Hue", 0.5, 0.0, 1.0)
    saturation: _colour_prop("Saturation", 1.0, 0.0, 2.0)
    value: _colour_prop("Value", 1.0, 0.0, 2.0)
    brightness: _colour_prop("Brightness", 0.0, -1.0, 1.0)
    contrast: _colour_prop("Contrast", 0.0, -1.0, 1.0)


class _EditOperator(bpy.types.Operator):
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: Any) -> bool:
        return anchor(context) is not None

    def execute(self, context: Any) -> set:
        try:
            self.run(anchor(context), context)
        except ValueError as exc:
            self.report({"WARNING"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}


class NRCONVERT_OT_crop_add(_EditOperator):
    """Add a crop box around the asset: move and scale it to cut the asset (non-destructive)"""

    bl_idname, bl_label = "nrconvert.crop_add", "Add Crop Box"

    def run(self, obj: Any, context: Any) -> None:
        box = add_crop(obj, context)
        for o in context.view_layer.objects.selected:
            o.select_set(False)
        box.select_set(True)
        context.view_layer.objects.active = box


class NRCONVERT_OT_crop_remove(_EditOperator):
    """Remove the crop box and its modifiers"""

    bl_idname, bl_label = "nrconvert.crop_remove", "Remove Crop"

    def run(self, obj: Any, context: Any) -> None:
        remove_crop(obj)


class NRCONVERT_OT_colour_remove(_EditOperator):
    """Take the colour tweak out of every material of the asset (restores the node trees)"""

    bl_idname, bl_label = "nrconvert.colour_remove", "Remove Colour Tweak"

    def run(self, obj: Any, context: Any) -> None:
        remove_colour(obj)


class NRC_PT_edit(SubPanel, bpy.types.Panel):
    bl_label = "Edit"
    bl_idname = "NRC_PT_edit"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: Any) -> None:
        obj, layout = anchor(context), self.layout
        if obj is None:
            layout.label(text="Select an imported asset")
            return
        holder = asset_root(obj) or obj
        settings = holder.nrc_edit
        box = layout.box()
        box.label(text="Crop", icon="MOD_BOOLEAN")
        if settings.crop_box is not None:
            box.prop(settings, "crop_box")
            box.operator(NRCONVERT_OT_crop_remove.bl_idname, icon="X")
        else:
            box.operator(NRCONVERT_OT_crop_add.bl_idname, icon="ADD")
        box = layout.box()
        lod = active_lod(holder)
        box.label(text=f"Decimate {lod.name if lod else ''}", icon="MOD_DECIM")
        box.prop(settings, "decimate_ratio")
        box = layout.box()
        box.label(text="Colour", icon="COLOR")
        for name, *_ in TWEAK_INPUTS:
            box.prop(settings, name.lower())
        box.operator(NRCONVERT_OT_colour_remove.bl_idname, icon="X")


_CLASSES = (NRC_EditSettings, NRCONVERT_OT_crop_add, NRCONVERT_OT_crop_remove,
            NRCONVERT_OT_colour_remove)


def register() -> None:
    for cls in _CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Object.nrc_edit = PointerProperty(type=NRC_EditSettings)
    if hasattr(bpy.types, "NRC_PT_main"):  # the parent panel comes from properties.py
        bpy.utils.register_class(NRC_PT_edit)


def unregister() -> None:
    if NRC_PT_edit.is_registered:
        bpy.utils.unregister_class(NRC_PT_edit)
    del bpy.types.Object.nrc_edit
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
