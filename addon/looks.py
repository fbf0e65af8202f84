"""Looks: show an imported asset as captured (neural), relightable PBR, base colour or normals.

Every mode only changes which material each material slot of the asset's meshes points at; no
material is ever edited, so going back to PBR puts the very same datablocks back.

* PBR: the GLB's default materials (the glTF importer keeps them per slot in
  `mesh.gltf2_variant_default_materials`; otherwise the slot materials recorded on leaving PBR).
* Captured: the `captured` material of `KHR_materials_variants`, read from the data the importer
  keeps (`mesh.gltf2_variant_mesh_data`, variant names on `scenes[0]`), the same assignment
  `scene.gltf2_display_variant` makes, but for this asset only (that operator switches every
  mesh in the file). With NRC_neural_material it is the neural node group's material.
* Base colour / normals: a throw-away copy of the PBR material whose output is re-routed through
  an Emission shader fed by what feeds the Principled BSDF's Base Color (or Normal) input, so
  texture transforms and colour factors show as they are. The copies are deleted when unused.
"""
from __future__ import annotations

import json
import re
from typing import Any

import bpy

from .properties import SubPanel, active_asset, asset_root

MODES = (
    ("CAPTURED", "Captured", "The photo-lit look (neural material when the GLB carries one)"),
    ("PBR", "PBR", "The relightable PBR material (base colour, ORM, normal map)"),
    ("BASE_COLOR", "Base Color", "Unlit albedo of the PBR material"),
    ("NORMALS", "Normals", "World-space shading normals of the PBR material (normal map applied)"),
)
CAPTURED_VARIANT = "captured"
OVERRIDE_TAG = "nrc_look_override"
LOD_SUFFIX = re.compile(r"^(.*)_LOD\d+(\.\d+)?$")
_busy = False  # the look property's update callback must not re-enter while we set it


# ---------------------------------------------------------------- which objects form an asset


def _stem(obj: Any) -> str | None:
    """`<name>` of an object named `<name>_LOD<k>[.NNN]`, keeping the `.NNN` of a re-import."""
    m = LOD_SUFFIX.match(obj.name)
    return m.group(1) + (m.group(2) or "") if m else None


def asset_meshes(obj: Any) -> list[Any]:
    """Mesh objects of the asset `obj` belongs to.

    With the add-on's importer that is the asset root's LOD levels and children. For a file
    imported with Blender's plain glTF importer: the object's hierarchy plus every object named
    `<name>_LOD<k>` (the lower LODs land outside the hierarchy, in "Orphan Nodes").
    """
    root = asset_root(obj)
    if root is not None:
        family = {lvl.object for lvl in root.nrconvert.lods if lvl.object is not None}
        family |= set(root.children_recursive)
    else:
        top = obj
        while top.parent is not None:
            top = top.parent
        family = {top, *top.children_recursive}
        stems = {s for s in map(_stem, family) if s}
        family |= {o for o in bpy.data.objects if _stem(o) in stems}
    return sorted((o for o in family if o.type == "MESH"), key=lambda o: o.name)


def _level(obj: Any) -> Any:
    """The importer's LOD record of a level object (its PBR and captured materials), or None."""
    root = asset_root(obj)
    for lvl in root.nrconvert.lods if root is not None else ():
        if lvl.object == obj:
            return lvl
    return None


# ---------------------------------------------------------------- materials per mode


def _variant_index(name: str = CAPTURED_VARIANT) -> int | None:
    variants = getattr(bpy.data.scenes[0], "gltf2_KHR_materials_variants_variants", None) or []
    for v in variants:
        if v.name == name:
            return v.variant_idx
    return None


def captured_material(mesh: Any, slot: int) -> Any:
    """The `captured` variant's material of `slot`, or None."""
    entries = [e for e in getattr(mesh, "gltf2_variant_mesh_data", ()) if e.material_slot_index == slot]
    idx = _variant_index()
    if idx is None:  # variants list replaced by a later import: ours map exactly one variant
        ids = {v.variant.variant_idx for e in entries for v in e.variants}
        idx = ids.pop() if len(ids) == 1 else None
    for e in entries:
        if idx in [v.variant.variant_idx for v in e.variants]:
            return e.material
    return None


def _captured(obj: Any, slot: int) -> Any:
    """Captured material of a slot: the glTF variant data, else the importer's LOD record."""
    mat = captured_material(obj.data, slot)
    lvl = _level(obj)
    if mat is None and lvl is not None and len(obj.material_slots) == 1:
        mat = lvl.captured_material
    return mat


def default_material(obj: Any, slot: int) -> Any:
    """The slot's PBR material: recorded on leaving PBR, else the importer's default material."""
    for rec in obj.nrc_look_originals:
        if rec.slot == slot:
            return rec.material
    for d in getattr(obj.data, "gltf2_variant_default_materials", ()):
        if d.material_slot_index == slot and d.default_material is not None:
            return d.default_material
    lvl = _level(obj)
    if lvl is not None and lvl.pbr_material is not None and len(obj.material_slots) == 1:
        return lvl.pbr_material
    return obj.material_slots[slot].material


def _record_originals(obj: Any) -> None:
    obj.nrc_look_originals.clear()
    for i, ms in enumerate(obj.material_slots):
        rec = obj.nrc_look_originals.add()
        rec.slot, rec.material = i, ms.material


def _principled(mat: Any) -> Any:
    nodes = [n for n in mat.node_tree.nodes if n.type == "BSDF_PRINCIPLED"] if mat.node_tree else []
    if not nodes:
        raise ValueError(f"material {mat.name!r} has no Principled BSDF to take a base colour from")
    return nodes[0]


def _output(mat: Any) -> Any:
    outs = [n for n in mat.node_tree.nodes if n.type == "OUTPUT_MATERIAL"]
    active = [n for n in outs if n.is_active_output]
    return (active or outs)[0] if outs else mat.node_tree.nodes.new("ShaderNodeOutputMaterial")


def _source(socket: Any) -> Any:
    """What feeds `socket`, or None."""
    return socket.links[0].from_socket if socket.is_linked else None


def make_override(original: Any, mode: str) -> Any:
    """A copy of `original` showing its base colour or normals unlit (the original is untouched)."""
    name = f"{original.name}.nrc_{mode.lower()}"
    existing = bpy.data.materials.get(name)
    if existing is not None and existing.get(OVERRIDE_TAG) == mode:
        return existing
    _principled(original)  # raise before copying anything
    mat = original.copy()
    mat.name = name
    mat[OVERRIDE_TAG] = mode
    tree = mat.node_tree
    bsdf, out = _principled(mat), _output(mat)
    emit = tree.nodes.new("ShaderNodeEmission")
    emit.location = (out.location.x - 200, out.location.y - 250)
    if mode == "BASE_COLOR":
        src = _source(bsdf.inputs["Base Color"])
        if src is None:
            emit.inputs["Color"].default_value = bsdf.inputs["Base Color"].default_value
        else:
            tree.links.new(src, emit.inputs["Color"])
    else:
        src = _source(bsdf.inputs["Normal"])
        if src is None:
            src = tree.nodes.new("ShaderNodeNewGeometry").outputs["Normal"]
        remap = tree.nodes.new("ShaderNodeVectorMath")
        remap.operation = "MULTIPLY_ADD"  # n * 0.5 + 0.5: the usual normal-map colours
        remap.inputs[1].default_value = (0.5, 0.5, 0.5)
        remap.inputs[2].default_value = (0.5, 0.5, 0.5)
        tree.links.new(src, remap.inputs[0])
        tree.links.new(remap.outputs["Vector"], emit.inputs["Color"])
    tree.links.new(emit.outputs["Emission"], out.inputs["Surface"])
    for link in list(out.inputs["Displacement"].links):
        tree.links.remove(link)
    return mat


def _purge_overrides() -> None:
    for mat in [m for m in bpy.data.materials if m.get(OVERRIDE_TAG) and m.users == 0]:
        bpy.data.materials.remove(mat)


# ---------------------------------------------------------------- switching


def _target(obj: Any, slot: int, mode: str) -> Any:
    if mode == "PBR":
        return default_material(obj, slot)
    if mode == "CAPTURED":
        return _captured(obj, slot)
    original = default_material(obj, slot)
    return make_override(original, mode) if original is not None else None


def set_look(objects: list[Any], mode: str) -> int:
    """Switch the mesh objects to look `mode`; return how many slots changed material.

    Raises ValueError (nothing changed) when no slot of `objects` has a material for `mode`,
    e.g. `CAPTURED` on a GLB without a captured variant.
    """
    global _busy
    if mode not in {m[0] for m in MODES}:
        raise ValueError(f"unknown look {mode!r}")
    meshes = [o for o in objects if o.type == "MESH"]
    plan = {o: [_target(o, i, mode) for i in range(len(o.material_slots))] for o in meshes}
    if not any(m is not None for mats in plan.values() for m in mats):
        raise ValueError(f"no material for look {mode!r} on {', '.join(o.name for o in meshes) or 'nothing'}")
    changed = 0
    _busy = True
    try:
        for obj, mats in plan.items():
            if obj.nrc_look_applied == "PBR" and mode != "PBR":
                _record_originals(obj)
            for slot, mat in zip(obj.material_slots, mats):
                if mat is not None and slot.material != mat:
                    slot.material = mat
                    changed += 1
            if mode == "PBR":
                obj.nrc_look_originals.clear()
            obj.nrc_look = obj.nrc_look_applied = mode
    finally:
        _busy = False
    _purge_overrides()
    return changed


def set_asset_look(obj: Any, mode: str) -> int:
    """`set_look` on the whole asset of `obj`; the asset root (if any) remembers the mode too."""
    global _busy
    changed = set_look(asset_meshes(obj), mode)
    root = asset_root(obj)
    if root is not None and root.nrc_look != mode:
        _busy = True
        try:
            root.nrc_look = root.nrc_look_applied = mode
        finally:
            _busy = False
    return changed


def neural_summary(mat: Any) -> list[str]:
    """What the Look panel says of a material carrying NRC_neural_material: its decoder and the
    images it reads, so a missing or replaced image shows before an export drops the extension."""
    data = getattr(mat, "nrconvert", None)
    if data is None or not data.neural_json:
        return []
    ext = json.loads(data.neural_json)
    has_env = "environment" in ext
    lines = [f"Neural: {ext.get('viewEncoding', 'sh2')}" + (" + environment" if has_env else "")]
    images = [("Features 0-3", data.feature_image_0), ("Features 4-7", data.feature_image_1)]
    for label, image in images + ([("Environment", data.environment_image)] if has_env else []):
        size = f" ({image.size[0]} x {image.size[1]})" if image is not None else ""
        lines.append(f"{label}: {image.name}{size}" if image is not None else f"{label}: missing")
    return lines


def asset_neural_summary(obj: Any) -> list[str]:
    """neural_summary of the first level whose captured material carries the extension."""
    for mesh_obj in asset_meshes(obj):
        for slot in range(len(mesh_obj.material_slots)):
            lines = neural_summary(_captured(mesh_obj, slot))
            if lines:
                return [f"{mesh_obj.name}: " + lines[0]] + lines[1:]
    return []


def _anchor(context: Any) -> Any:
    """The object whose asset the panel acts on: the active asset's root, else the active object."""
    return active_asset(context) or getattr(context, "object", None)


def _on_look(self: Any, context: Any) -> None:
    """The enum (panel, scripts): apply to the whole asset; an unavailable look falls back to PBR."""
    if _busy:
        return
    try:
        set_asset_look(self, self.nrc_look)
    except ValueError as exc:
        print(f"nrconvert: {exc}")
        set_asset_look(self, "PBR")


# ---------------------------------------------------------------- UI


class NRC_LookOriginal(bpy.types.PropertyGroup):
    slot: bpy.props.IntProperty()
    material: bpy.props.PointerProperty(type=bpy.types.Material)


class NRCONVERT_OT_set_look(bpy.types.Operator):
    """Show the active asset as captured (neural), relightable PBR, base colour or normals"""

    bl_idname = "nrconvert.set_look"
    bl_label = "Set Look"
    bl_options = {"REGISTER", "UNDO"}

    mode: bpy.props.EnumProperty(name="Look", items=MODES, default="PBR")

    @classmethod
    def poll(cls, context: Any) -> bool:
        return _anchor(context) is not None

    def execute(self, context: Any) -> set[str]:
        try:
            set_asset_look(_anchor(context), self.mode)
        except ValueError as exc:
            self.report({"WARNING"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}


class NRC_PT_looks(SubPanel, bpy.types.Panel):
    bl_label = "Look"
    bl_idname = "NRC_PT_looks"

    def draw(self, context: Any) -> None:
        obj = _anchor(context)
        if obj is None or not asset_meshes(obj):
            self.layout.label(text="Select an imported asset")
            return
        grid = self.layout.grid_flow(columns=2, align=True)
        for ident, label, _ in MODES:
            op = grid.operator(NRCONVERT_OT_set_look.bl_idname, text=label, depress=obj.nrc_look == ident)
            op.mode = ident
        lines = asset_neural_summary(obj)
        if lines:
            box = self.layout.box()
            for k, line in enumerate(lines):
                box.label(text=line, icon="SHADING_TEXTURE" if k == 0 else "IMAGE_DATA")


_CLASSES = (NRC_LookOriginal, NRCONVERT_OT_set_look)


def register() -> None:
    for cls in _CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Object.nrc_look = bpy.props.EnumProperty(name="Look", items=MODES, default="PBR", update=_on_look)
    bpy.types.Object.nrc_look_applied = bpy.props.StringProperty(default="PBR", options={"HIDDEN"})
    bpy.types.Object.nrc_look_originals = bpy.props.CollectionProperty(type=NRC_LookOriginal)
    if hasattr(bpy.types, "NRC_PT_main"):  # the parent panel comes from properties.py
        bpy.utils.register_class(NRC_PT_looks)


def unregister() -> None:
    if NRC_PT_looks.is_registered:
        bpy.utils.unregister_class(NRC_PT_looks)
    del bpy.types.Object.nrc_look_originals
    del bpy.types.Object.nrc_look_applied
    del bpy.types.Object.nrc_look
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
