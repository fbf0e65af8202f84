"""Import a GLB into Blender and set it up for one evaluation render (imports bpy: subprocess only).

The options pick what a viewer of the asset would see: which LOD (nodes named `*_LOD<k>`), which
material (the default PBR one or a `KHR_materials_variants` variant, switched with the glTF
importer's own variant operator), with or without the normal map, or the relighting baseline in
which the PBR material takes the photo-lit `captured` texture as its Base Color. Every option
that finds nothing to act on raises, so a benchmark never reports a comparison that did not happen.
"""
from __future__ import annotations

import re
from typing import Any

import bpy

LOD_SUFFIX = re.compile(r"_LOD(\d+)$")
CAPTURED = "captured"


def import_glb(content: dict[str, Any]) -> None:
    """Import `content['glb']` and apply the LOD, variant, normal-map and base-colour options."""
    result = bpy.ops.import_scene.gltf(filepath=content["glb"])
    if "FINISHED" not in result:
        raise RuntimeError(f"Blender's glTF importer failed on {content['glb']}: {result}")
    show_lod(content.get("lod"))
    if content.get("variant"):
        display_variant(content["variant"])
    if content.get("captured_as_base_color"):
        captured_as_base_color()
    if not content.get("normal_map", True):
        disconnect_normal_maps()


def _lod_of(obj: bpy.types.Object) -> int | None:
    """The k of an object imported from a node named `*_LOD<k>` (Blender may append `.001`)."""
    m = LOD_SUFFIX.search(obj.name.split(".")[0])
    return int(m.group(1)) if m else None


def show_lod(lod: int | None) -> None:
    """Render only LOD `lod`; with None, LOD0 as a loader without MSFT_lod would (hide LOD1+).

    Blender's importer has no MSFT_lod support. It imports every LOD node, but the ones only the
    extension references (not scene roots) land in an 'Orphan Nodes' collection that is excluded
    from the view layer, so the chosen LOD is linked into the scene's own collection to render.
    A GLB without an LOD chain (a lone LOD keeps its plain node name) is its own LOD0.
    """
    scene, layer = bpy.context.scene, bpy.context.view_layer
    found = {k for k in map(_lod_of, scene.objects) if k is not None}
    if lod is not None and lod not in found and (lod != 0 or found):
        raise ValueError(f"no node named *_LOD{lod} in the GLB (LODs found: {sorted(found) or 'none'})")
    for obj in list(scene.objects):
        k = _lod_of(obj)
        if k is None:
            continue
        obj.hide_render = k != (lod or 0)
        if not obj.hide_render and obj.name not in layer.objects:
            scene.collection.objects.link(obj)
    layer.update()  # view_layer.objects lists a newly linked object only after an update


def _meshes() -> list[bpy.types.Object]:
    """Mesh objects that will render (in the view layer, not hidden)."""
    return [o for o in bpy.context.view_layer.objects if o.type == "MESH" and not o.hide_render]


def _variant_index(name: str) -> int:
    scene = bpy.data.scenes[0]  # the importer and its operators keep variants on the first scene
    names = [v.name for v in getattr(scene, "gltf2_KHR_materials_variants_variants", [])]
    if name not in names:
        raise ValueError(f"the GLB has no material variant {name!r} (variants: {names or 'none'})")
    return scene.gltf2_KHR_materials_variants_variants[names.index(name)].variant_idx


def display_variant(name: str) -> None:
    """Switch every mesh to variant `name` with the importer's `scene.gltf2_display_variant`."""
    bpy.data.scenes[0].gltf2_active_variant = _variant_index(name)
    result = bpy.ops.scene.gltf2_display_variant()
    if "FINISHED" not in result:
        raise RuntimeError(f"scene.gltf2_display_variant failed: {result}")


def _variant_material(mesh: bpy.types.Mesh, slot: int, idx: int) -> bpy.types.Material | None:
    for entry in mesh.gltf2_variant_mesh_data:
        if entry.material_slot_index == slot and idx in [v.variant.variant_idx for v in entry.variants]:
            return entry.material
    return None


def _image_node(mat: bpy.types.Material) -> bpy.types.Node:
    """The one image texture of an unlit (captured) material: its Base Color."""
    nodes = [n for n in mat.node_tree.nodes if n.type == "TEX_IMAGE" and n.image is not None]
    if len(nodes) != 1:
        raise ValueError(f"material {mat.name!r} should hold exactly one texture, has {len(nodes)}")
    return nodes[0]


def _principled(mat: bpy.types.Material) -> bpy.types.Node:
    nodes = [n for n in mat.node_tree.nodes if n.type == "BSDF_PRINCIPLED"]
    if not nodes:
        raise ValueError(f"material {mat.name!r} is not a PBR (Principled) material")
    return nodes[0]


def _with_base_color(pbr: bpy.types.Material, captured: bpy.types.Material) -> bpy.types.Material:
    """A copy of `pbr` whose Base Color is the captured texture, read with the captured UV map."""
    src = _image_node(captured)
    mat = pbr.copy()
    mat.name = f"{pbr.name}_captured_base"
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    tex = nodes.new("ShaderNodeTexImage")
    tex.image, tex.interpolation, tex.extension = src.image, src.interpolation, src.extension
    uv_link = src.inputs["Vector"].links
    if uv_link:
        if uv_link[0].from_node.type != "UVMAP":
            raise ValueError(f"captured texture of {captured.name!r} uses a texture transform; not supported")
        uv = nodes.new("ShaderNodeUVMap")
        uv.uv_map = uv_link[0].from_node.uv_map
        links.new(uv.outputs["UV"], tex.inputs["Vector"])
    links.new(tex.outputs["Color"], _principled(mat).inputs["Base Color"])
    return mat


def captured_as_base_color() -> None:
    """The relighting baseline: the PBR material everywhere, with the photo-lit texture as albedo.

    This is what using the captured (lit) texture as an ordinary material gives under a new light,
    the thing a relightable bake has to beat.
    """
    idx = _variant_index(CAPTURED)
    swapped = 0
    for obj in _meshes():
        for slot, ms in enumerate(obj.material_slots):
            captured = _variant_material(obj.data, slot, idx)
            if ms.material is None or captured is None:
                continue
            ms.material = _with_base_color(ms.material, captured)
            swapped += 1
    if not swapped:
        raise ValueError(f"no rendered mesh maps a material to the {CAPTURED!r} variant")


def disconnect_normal_maps() -> None:
    """Unlink every Normal Map node from its BSDF's Normal input: the 'without normal map' render."""
    removed = 0
    for mat in {ms.material for obj in _meshes() for ms in obj.material_slots if ms.material}:
        links = mat.node_tree.links
        for link in list(links):
            if link.from_node.type == "NORMAL_MAP" and link.to_socket.name == "Normal":
                links.remove(link)
                removed += 1
    if not removed:
        raise ValueError("normal_map=False, but no rendered material uses a normal map")
