"""Colour tweaks for edit.py: a node group in front of the colour that reaches the output.

Why a group in front of a colour input, not after the shader: shaders cannot be colour-graded,
colours can. The inputs graded are the Principled BSDF's Base Color (PBR look) and the unlit
Emission's Color (captured look: neural decoder or texture), found from the active Material
Output through Mix/Add Shader nodes. Each inserted node records which socket it feeds, so it can
be re-inserted after something else relinks that socket (the neural/fallback switch) and taken
out again, linking the colour source straight back: the original node tree, as it was.
"""
from __future__ import annotations

from typing import Any

import bpy

TWEAK_GROUP = TWEAK_NODE = "NRC Colour Tweak"
TWEAK_INPUTS = (("Hue", 0.5, 0.0, 1.0), ("Saturation", 1.0, 0.0, 2.0), ("Value", 1.0, 0.0, 2.0),
                ("Brightness", 0.0, -1.0, 1.0), ("Contrast", 0.0, -1.0, 1.0))


def tweak_group() -> Any:
    """Shader group: Color -> Hue/Saturation/Value -> Brightness/Contrast -> Color."""
    ng = bpy.data.node_groups.get(TWEAK_GROUP)
    if ng is not None and ng.bl_idname == "ShaderNodeTree":
        return ng
    ng = bpy.data.node_groups.new(TWEAK_GROUP, "ShaderNodeTree")
    ng.interface.new_socket("Color", in_out="INPUT", socket_type="NodeSocketColor")
    for name, default, lo, hi in TWEAK_INPUTS:
        s = ng.interface.new_socket(name, in_out="INPUT", socket_type="NodeSocketFloat")
        s.default_value, s.min_value, s.max_value = default, lo, hi
    ng.interface.new_socket("Color", in_out="OUTPUT", socket_type="NodeSocketColor")
    n, link = ng.nodes, ng.links.new
    gin, gout = n.new("NodeGroupInput"), n.new("NodeGroupOutput")
    hsv, bc = n.new("ShaderNodeHueSaturation"), n.new("ShaderNodeBrightContrast")
    link(gin.outputs[0], hsv.inputs["Color"])
    for name in ("Hue", "Saturation", "Value"):
        link(gin.outputs[name], hsv.inputs[name])
    link(hsv.outputs["Color"], bc.inputs["Color"])
    link(gin.outputs["Brightness"], bc.inputs["Bright"])
    link(gin.outputs["Contrast"], bc.inputs["Contrast"])
    link(bc.outputs["Color"], gout.inputs[0])
    for i, node in enumerate((gin, hsv, bc, gout)):
        node.location = (250 * i, 0)
    return ng


def colour_targets(material: Any) -> list[Any]:
    """Input sockets whose colour reaches the active Material Output's Surface: Principled Base
    Color and Emission Color, found through Mix/Add Shader nodes."""
    tree = material.node_tree
    outs = [n for n in tree.nodes if n.type == "OUTPUT_MATERIAL"]
    out = next((n for n in outs if n.is_active_output), outs[0] if outs else None)
    found, stack = [], [out.inputs["Surface"]] if out is not None else []
    while stack:
        for link in stack.pop().links:
            node = link.from_node
            if node.type == "BSDF_PRINCIPLED":
                found.append(node.inputs["Base Color"])
            elif node.type == "EMISSION":
                found.append(node.inputs["Color"])
            elif node.type in {"MIX_SHADER", "ADD_SHADER"}:
                stack += [s for s in node.inputs if s.type == "SHADER"]
    return found


def _tweak_for(tree: Any, socket: Any) -> Any:
    for node in tree.nodes:
        if node.name.startswith(TWEAK_NODE) and node.get("nrc_target") == [socket.node.name, socket.identifier]:
            return node
    return None


def _ensure_tweak(tree: Any, socket: Any) -> Any:
    """The tweak node in front of `socket`, inserted (or re-inserted after something else
    relinked the socket, e.g. the neural/fallback switch) as needed."""
    node = _tweak_for(tree, socket)
    source = socket.links[0].from_socket if socket.is_linked else None
    if node is None:
        node = tree.nodes.new("ShaderNodeGroup")
        node.name = node.label = TWEAK_NODE
        node.node_tree = tweak_group()
        node["nrc_target"] = [socket.node.name, socket.identifier]
        node.location = (socket.node.location.x - 220, socket.node.location.y + 120)
        node.inputs["Color"].default_value = tuple(socket.default_value)
    if source is not None and source.node == node:
        return node
    for link in list(node.inputs["Color"].links):
        tree.links.remove(link)
    if source is not None:
        tree.links.new(source, node.inputs["Color"])
    tree.links.new(node.outputs["Color"], socket)
    return node


def apply_tweaks(materials: list[Any], values: dict[str, float]) -> int:
    """Insert or update the tweak in front of every colour target of `materials`; `values` by
    input name (Hue, Saturation, ...). Returns how many colour inputs it drives."""
    count = 0
    for mat in materials:
        for socket in colour_targets(mat):
            node = _ensure_tweak(mat.node_tree, socket)
            for name, value in values.items():
                node.inputs[name].default_value = value
            count += 1
    return count


def drop_unused_group() -> None:
    group = bpy.data.node_groups.get(TWEAK_GROUP)
    if group is not None and group.users == 0:
        bpy.data.node_groups.remove(group)


def remove_tweaks(material: Any) -> int:
    """Take the tweak nodes out of a material, linking each colour source straight back."""
    tree, removed = material.node_tree, 0
    for node in [n for n in tree.nodes if n.name.startswith(TWEAK_NODE)]:
        target_name, ident = list(node.get("nrc_target", ["", ""]))
        target = tree.nodes.get(target_name)
        socket = next((s for s in target.inputs if s.identifier == ident), None) if target else None
        colour = node.inputs["Color"]
        source = colour.links[0].from_socket if colour.is_linked else None
        if socket is not None and (not socket.is_linked or socket.links[0].from_node == node):
            if source is not None:
                tree.links.new(source, socket)
            else:
                for link in list(socket.links):
                    tree.links.remove(link)
                socket.default_value = tuple(colour.default_value)
        tree.nodes.remove(node)
        removed += 1
    return removed
