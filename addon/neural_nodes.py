"""NRC_neural_material as a shader node group, so the captured look previews in Cycles and EEVEE.

`apply_neural(material, ext, images)` turns the `captured` variant's unlit material (as Blender's
glTF importer builds it: Emission behind a Light Path mix) into one whose Emission colour comes
from a node group that evaluates the extension's decoder (docs/neural_material.md) per shading
point. The importer's fallback image node stays in the tree, unlinked, and `use_neural(material,
False)` switches back to it.

The group computes exactly what `_vendor.neural.decode` computes, with the constant algebra done
once in float64 (neural_math.py) rather than per pixel in nodes:
- dequantisation and the view encoding are affine in the node values the group has (texture
  bytes / 255, monomials of the view direction), so they are folded into the first layer's
  weights and bias;
- `sigmoid(x) = 0.5 * tanh(x / 2) + 0.5`: the `/ 2` is folded into the layer, the `0.5 * . + 0.5`
  into the next layer (or the output);
- each dense layer is one Vector Math Multiply Add per (input, 3 outputs): three neurons travel
  as one vector, and a float socket plugged into a vector input broadcasts to all three.
The view direction is Geometry > Incoming (world space, surface -> viewer), taken into object
space with Vector Transform and normalised; the decoder wants camera -> surface in glTF's Y-up
local axes, and the importer stores glTF (x, y, z) as Blender (x, -z, y), so the node values are
mapped back (with the sign) inside the folded encoding. The decoder's sRGB output goes through
the exact piecewise sRGB EOTF (Math nodes), since Blender shades in linear light.

An `environment` (version 1.1) is looked up inside the group at the mirrored direction's equirect
angles (ARCTAN2, ARCCOSINE), bilinearly by hand: four Closest, REPEAT Image Textures (Non-Color)
at the surrounding texel centres, the latitude clamped to the outer rows (CLAMP_TO_EDGE in v,
which one Linear REPEAT lookup would break at the poles; EEVEE would also mipmap it), blended by
the fractions (neural_math.environment_taps). Its dequantisation and the sigmoid's halving are
folded into the last layer, so the colour is 0.5 * tanh(a' + b' * t) + 0.5 of the texel values t.
"""
from __future__ import annotations

import bpy
import numpy as np

from ._vendor import neural
# the numbers (tests read BLENDER_TO_GLTF, camera_to_surface_gltf and decode_folded from here too)
from .neural_math import (BLENDER_TO_GLTF, SHADING_VALUES, VIEW_MONOMIALS, camera_to_surface_gltf,  # noqa: F401
                          decode_folded, environment_coordinates, environment_taps, environment_texels, folded_layers)

GROUP_NODE = "NRC Neural Material"
FEATURE_NODES = ("NRC Features 0-3", "NRC Features 4-7")
UV_NODE = "NRC UV"
# inside the group: the environment's four texel lookups (bottom-left, bottom-right, top-left, top-right)
ENVIRONMENT_NODES = tuple(f"NRC Environment {t}" for t in ("x0 y0", "x1 y0", "x0 y1", "x1 y1"))
FALLBACK_KEY = "nrc_fallback_node"  # custom property on the group node: the fallback's name
SRGB_THRESHOLD = 0.04045


# ---------------------------------------------------------------- validation

def image_bytes(image, what: str = "feature image", depths: tuple = (32,)) -> np.ndarray:
    """(H, W, 4) uint8 of an 8-bit Blender image (RGBA8, or another of `depths` bits per pixel),
    top row first (glTF's order)."""
    w, h = image.size
    if w == 0 or h == 0:
        raise neural.NeuralMaterialError(f"{what} {image.name!r} has no pixels (missing or unreadable)")
    px = np.empty(w * h * 4, np.float32)
    image.pixels.foreach_get(px)
    if image.is_float or image.depth not in depths:
        raise neural.NeuralMaterialError(f"{what} {image.name!r} is not {'RGBA8' if depths == (32,) else 'RGB(A)8'} "
                                         f"({image.depth} bits per pixel)")
    return np.rint(px.reshape(h, w, 4)[::-1] * 255.0).astype(np.uint8)


def parse(ext: dict, images: tuple, environment=None) -> neural.NeuralMaterial:
    """The extension checked against its two images (and its environment's image, a bpy Image
    or None): NeuralMaterialError (a ValueError) when the file is malformed in any way the spec
    names. Reads the images' raw bytes (byte buffers are raw whatever the colour space) and
    changes nothing, so a bad file leaves no trace."""
    if not isinstance(images, (tuple, list)) or len(images) != 2 or any(i is None for i in images):
        raise neural.NeuralMaterialError("NRC_neural_material needs exactly two feature images")
    wanted = environment is not None and isinstance(ext, dict) and ext.get("environment") is not None
    env = image_bytes(environment, "environment image", (24, 32))[..., :3] if wanted else None
    return neural.from_json(ext, (image_bytes(images[0]), image_bytes(images[1])), env)


def _as_data(image) -> None:
    """Feature textures are data: no sRGB decoding, and alpha (features 3 and 7) independent of
    RGB, never premultiplied (Cycles and EEVEE keep channel-packed images as stored)."""
    if image.colorspace_settings.name != "Non-Color":
        image.colorspace_settings.name = "Non-Color"
    image.alpha_mode = "CHANNEL_PACKED"


# ---------------------------------------------------------------- node building

class _Nodes:
    """Adds nodes to a tree in a readable grid; inputs are sockets or constants."""

    def __init__(self, tree):
        self.tree = tree
        self.count = 0

    def add(self, kind: str, column: float, row: float, **props):
        node = self.tree.nodes.new(kind)
        for key, value in props.items():
            setattr(node, key, value)
        node.location = (column * 220.0, -row * 160.0)
        node.hide = kind in ("ShaderNodeMath", "ShaderNodeVectorMath")
        self.count += 1
        return node

    def _feed(self, node, values) -> None:
        sockets = [s for s in node.inputs if s.enabled]
        for socket, value in zip(sockets, values):
            if hasattr(value, "is_linked"):  # a socket
                self.tree.links.new(value, socket)
            elif value is not None:
                socket.default_value = tuple(value) if np.ndim(value) else float(value)

    def math(self, op: str, column: float, row: float, *values, clamp: bool = False):
        node = self.add("ShaderNodeMath", column, row, operation=op, use_clamp=clamp)
        self._feed(node, values)
        return node.outputs[0]

    def vmath(self, op: str, column: float, row: float, *values):
        node = self.add("ShaderNodeVectorMath", column, row, operation=op)
        self._feed(node, values)
        return node.outputs[0]

    def separate(self, vector, column: float, row: float) -> list:
        node = self.add("ShaderNodeSeparateXYZ", column, row)
        self.tree.links.new(vector, node.inputs[0])
        return list(node.outputs)

    def combine(self, values, column: float, row: float):
        node = self.add("ShaderNodeCombineXYZ", column, row)
        self._feed(node, values)
        return node.outputs[0]


def _view_values(b: _Nodes, encoding: str) -> tuple[list, object]:
    """(sockets of VIEW_MONOMIALS[encoding] and SHADING_VALUES[encoding], the socket of n):
    n = normalize(world -> object (Incoming)), for a reflected encoding first mirrored about the
    object-space Normal (the importer's NORMAL): the decoder's reflect(-I, N) is -reflect(I, N),
    and n is the negated decoder direction."""
    geometry = b.add("ShaderNodeNewGeometry", 0, 6)
    to_object = b.add("ShaderNodeVectorTransform", 1, 6, vector_type="VECTOR",
                      convert_from="WORLD", convert_to="OBJECT")
    b.tree.links.new(geometry.outputs["Incoming"], to_object.inputs[0])
    view = to_object.outputs[0]
    shading = []
    if neural.uses_normals(encoding):
        normal = b.add("ShaderNodeVectorTransform", 1, 7, vector_type="NORMAL",
                       convert_from="WORLD", convert_to="OBJECT")
        b.tree.links.new(geometry.outputs["Normal"], normal.inputs[0])
        if encoding in SHADING_VALUES:  # n.v = clamp(I . N) on unit vectors, then N itself
            unit_n = b.vmath("NORMALIZE", 2, 8, normal.outputs[0])
            unit_i = b.vmath("NORMALIZE", 2, 9, view)
            dot = b.add("ShaderNodeVectorMath", 2.5, 9, operation="DOT_PRODUCT")
            b.tree.links.new(unit_i, dot.inputs[0])
            b.tree.links.new(unit_n, dot.inputs[1])
            shading = [b.math("MULTIPLY", 3, 9, dot.outputs["Value"], 1.0, clamp=True)]
            if len(SHADING_VALUES[encoding]) > 1:
                shading += b.separate(unit_n, 3, 8)
        view = b.vmath("REFLECT", 2, 7, view, normal.outputs[0])
    n = b.vmath("NORMALIZE", 2, 6, view)
    out = []
    if VIEW_MONOMIALS[encoding]:
        comp = dict(zip(("nx", "ny", "nz"), b.separate(n, 3, 6)))
        for i, name in enumerate(VIEW_MONOMIALS[encoding]):
            p, _, q = name.partition("*")
            out.append(b.math("MULTIPLY", 4, 6 + i, comp[p], comp[q]) if q else comp[p])
    return out + shading, n


def _environment(b: _Nodes, n, image, column: float, row: float):
    """Colour socket of the environment texture (bytes / 255) seen along the group's mirrored n
    (Blender object axes): the bilinear lookup of neural_math.environment_taps, four Closest
    REPEAT Image Textures at texel centres blended by (fx, fy)."""
    w, h = image.size
    nx, ny, nz = b.separate(n, column, row)
    x = b.math("MULTIPLY_ADD", column + 1, row, b.math("ARCTAN2", column + 0.5, row, nx, ny), w / (2 * np.pi), -0.5)
    clamp = b.add("ShaderNodeClamp", column + 1, row + 1, clamp_type="MINMAX")
    b._feed(clamp, (b.math("MULTIPLY_ADD", column + 1, row + 0.5, b.math("ARCCOSINE", column + 0.5, row + 0.5, nz),
                           h / np.pi, -0.5), 0.0, h - 1.0))
    x0 = b.math("FLOOR", column + 1.5, row, x)
    y0 = b.math("MINIMUM", column + 1.5, row + 1, b.math("FLOOR", column + 1.5, row + 0.5, clamp.outputs[0]), h - 2.0)
    fx, fy = b.math("SUBTRACT", column + 2, row, x, x0), b.math("SUBTRACT", column + 2, row + 1, clamp.outputs[0], y0)
    xs = [b.math("MULTIPLY_ADD", column + 2, row + 2 + i, x0, 1.0 / w, (i + 0.5) / w) for i in (0, 1)]
    ys = [b.math("MULTIPLY_ADD", column + 2, row + 4 + j, y0, 1.0 / h, (j + 0.5) / h) for j in (0, 1)]
    taps = []
    for k, (j, i) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        tex = b.add("ShaderNodeTexImage", column + 3, row + 2 * k, image=image, interpolation="Closest",
                    extension="REPEAT")
        tex.name = tex.label = ENVIRONMENT_NODES[k]
        b.tree.links.new(b.combine((xs[i], ys[j], 0.0), column + 2.5, row + 2 * k), tex.inputs["Vector"])
        taps.append(tex.outputs["Color"])
    near, far = (b.vmath("MULTIPLY_ADD", column + 4.5, row + k, fx,
                         b.vmath("SUBTRACT", column + 4, row + k, t1, t0), t0)
                 for k, (t0, t1) in enumerate((taps[:2], taps[2:])))
    return b.vmath("MULTIPLY_ADD", column + 5, row, fy, b.vmath("SUBTRACT", column + 4.5, row + 2, far, near), near)


def _dense(b: _Nodes, inputs: list, w: np.ndarray, bias: np.ndarray, act: str, column: float
           ) -> tuple[list, float]:
    """One layer: per group of 3 neurons a chain of Vector Math Multiply Add (input broadcast x
    weight column + accumulator) starting from the bias, then the activation. Returns the
    output sockets (the "environment" layer's: its two vectors a', b') and the next free column."""
    end = column + 0.5 * len(inputs)
    outs = []
    for g in range(0, len(bias), 3):
        rows = min(3, len(bias) - g)
        wg = np.zeros((3, w.shape[1]))
        wg[:rows] = w[g:g + rows]
        acc = np.zeros(3)
        acc[:rows] = bias[g:g + rows]
        acc = tuple(np.float32(acc).tolist())
        used = [k for k in range(w.shape[1]) if np.any(wg[:, k])]
        if not used:
            acc = b.combine(acc, column, g)
        for step, k in enumerate(used):
            acc = b.vmath("MULTIPLY_ADD", column + 0.5 * step, g, inputs[k], wg[:, k], acc)
        if act == "relu":
            acc = b.vmath("MAXIMUM", end, g, acc, (0.0, 0.0, 0.0))
        if act == "environment":
            outs.append(acc)
            continue
        values = b.separate(acc, end + 0.7, g)[:rows]
        if act == "sigmoid":
            values = [b.math("TANH", end + 1.5, g + i / 3, v) for i, v in enumerate(values)]
        outs += values
    return outs, end + 2.5


def _srgb_to_linear(b: _Nodes, c, column: float, row: float):
    """Exact piecewise sRGB EOTF of a scalar in [0, 1]: c / 12.92 up to 0.04045, else
    ((c + 0.055) / 1.055) ** 2.4."""
    low = b.math("DIVIDE", column, row, c, 12.92)
    high = b.math("POWER", column + 0.5, row,
                  b.math("MULTIPLY_ADD", column, row + 0.3, c, 1.0 / 1.055, 0.055 / 1.055), 2.4)
    above = b.math("GREATER_THAN", column, row + 0.6, c, SRGB_THRESHOLD)
    return b.math("MULTIPLY_ADD", column + 1, row, above,
                  b.math("SUBTRACT", column + 0.5, row + 0.6, high, low), low)


def build_group(mat: neural.NeuralMaterial, name: str, environment=None):
    """A shader node group: inputs the two feature textures' colour and alpha, outputs `Color`
    (linear, for an Emission shader) and `sRGB` (the decoder's output as the spec defines it).
    `environment`: the bpy Image of the material's environment (needed when it has one)."""
    tree = bpy.data.node_groups.new(name, "ShaderNodeTree")
    for sock, kind in (("Features 0-2", "NodeSocketColor"), ("Feature 3", "NodeSocketFloat"),
                       ("Features 4-6", "NodeSocketColor"), ("Feature 7", "NodeSocketFloat")):
        tree.interface.new_socket(sock, in_out="INPUT", socket_type=kind)
    for sock in ("Color", "sRGB"):
        tree.interface.new_socket(sock, in_out="OUTPUT", socket_type="NodeSocketColor")
    b = _Nodes(tree)
    group_in = b.add("NodeGroupInput", -1, 0)
    rgb0, rgb1 = (b.separate(group_in.outputs[i], 0, 2 * i) for i in (0, 2))
    view, n = _view_values(b, mat.view_encoding)
    values = rgb0 + [group_in.outputs[1]] + rgb1 + [group_in.outputs[3]] + view
    layers, (gain, shift) = folded_layers(mat)
    column = 6.0
    for w, bias, act in layers:
        values, column = _dense(b, values, w, bias, act, column)
    if mat.environment is not None:  # values: (a', b'); 0.5 * tanh(a' + b' * t) + 0.5 below
        if environment is None:
            raise neural.NeuralMaterialError("the material has an environment but no environment image")
        texel = _environment(b, n, environment, column - 3.5, 8)
        s = b.vmath("MULTIPLY_ADD", column, 4, values[1], texel, values[0])
        values = [b.math("TANH", column + 1, 4 + i / 3, v) for i, v in enumerate(b.separate(s, column + 0.5, 4))]
        column += 1.5
    srgb = [b.math("MULTIPLY_ADD", column, 2 * i, v, gain[i], shift[i], clamp=True)
            for i, v in enumerate(values)]
    linear = [_srgb_to_linear(b, c, column + 1, 2 * i) for i, c in enumerate(srgb)]
    group_out = b.add("NodeGroupOutput", column + 4, 1)
    tree.links.new(b.combine(linear, column + 3, 0), group_out.inputs["Color"])
    tree.links.new(b.combine(srgb, column + 3, 3), group_out.inputs["sRGB"])
    tree["nrc_node_count"] = b.count
    return tree


# ---------------------------------------------------------------- the material

def _output_node(tree):
    outputs = [n for n in tree.nodes if n.type == "OUTPUT_MATERIAL"]
    active = [n for n in outputs if n.is_active_output]
    return (active or outputs or [tree.nodes.new("ShaderNodeOutputMaterial")])[0]


def _emission_node(tree):
    """The Emission shader that reaches the output's Surface (the importer's unlit setup), or a
    new one wired straight to it."""
    out = _output_node(tree)
    stack, seen = [out], set()
    while stack:
        node = stack.pop()
        for link in tree.links:
            if link.to_node == node and link.from_node.name not in seen:
                if link.from_node.type == "EMISSION":
                    return link.from_node
                seen.add(link.from_node.name)
                stack.append(link.from_node)
    emission = tree.nodes.new("ShaderNodeEmission")
    emission.location = (out.location.x - 250, out.location.y)
    tree.links.new(emission.outputs[0], out.inputs["Surface"])
    return emission


def _uv_map_name(material) -> str:
    """TEXCOORD_0's layer (the importer creates it first) on a mesh using the material."""
    for mesh in bpy.data.meshes:
        if mesh.uv_layers and any(m == material for m in mesh.materials):
            return mesh.uv_layers[0].name
    return ""


def _clear_previous(tree) -> None:
    for node in [n for n in tree.nodes if n.name.startswith("NRC ")]:
        if node.type == "GROUP" and node.node_tree is not None and node.node_tree.users <= 1:
            bpy.data.node_groups.remove(node.node_tree)
        tree.nodes.remove(node)


def apply_neural(material, ext: dict, images: tuple, environment=None) -> None:
    """Drive the material's unlit Emission with the NRC_neural_material decoder.

    `images` are the two feature textures (bpy Images, RGBA8), `environment` the image of the
    extension's `environment` (RGB(A)8; needed when it has one, ignored otherwise); they are set
    to Non-Color and channel-packed alpha. Raises ValueError (neural.NeuralMaterialError) on
    malformed data, before the material is touched, so the caller can warn and keep the fallback.
    """
    mat = parse(ext, images, environment)
    if mat.environment is None:
        environment = None
    for image in (*images, environment):
        if image is not None:
            _as_data(image)
    if material.node_tree is None:
        material.use_nodes = True
    tree = material.node_tree
    emission = _emission_node(tree)
    previous = neural_group_node(material)
    if previous is not None:  # applied before: the fallback is the one recorded then
        fallback = tree.nodes.get(previous.get(FALLBACK_KEY, ""))
    else:
        fallback = next((link.from_node for link in tree.links
                         if link.to_node == emission and link.to_socket.name == "Color"), None)
    _clear_previous(tree)
    x, y = emission.location.x - 300, emission.location.y
    group = tree.nodes.new("ShaderNodeGroup")
    group.name = group.label = GROUP_NODE
    group.node_tree = build_group(mat, f"NRC neural decoder ({material.name})", environment)
    group.location = (x, y + 250)
    uv = tree.nodes.new("ShaderNodeUVMap")
    uv.name = UV_NODE
    uv.uv_map = _uv_map_name(material)
    uv.location = (x - 600, y + 250)
    for i, (image, name) in enumerate(zip(images, FEATURE_NODES)):
        tex = tree.nodes.new("ShaderNodeTexImage")
        tex.name = tex.label = name
        tex.image, tex.interpolation, tex.extension = image, "Linear", "EXTEND"
        tex.location = (x - 350, y + 350 - 300 * i)
        tree.links.new(uv.outputs["UV"], tex.inputs["Vector"])
        tree.links.new(tex.outputs["Color"], group.inputs[2 * i])
        tree.links.new(tex.outputs["Alpha"], group.inputs[2 * i + 1])
    group[FALLBACK_KEY] = fallback.name if fallback is not None else ""
    emission.inputs["Strength"].default_value = 1.0
    use_neural(material, True)


def neural_group_node(material):
    """The material's neural group node, or None when it has none."""
    tree = material.node_tree
    return tree.nodes.get(GROUP_NODE) if tree is not None else None


def use_neural(material, enabled: bool) -> bool:
    """Show the neural decoder (True) or the importer's fallback texture (False) on the
    material's Emission; False when the material cannot switch (no neural group, no fallback)."""
    group = neural_group_node(material)
    if group is None:
        return False
    tree = material.node_tree
    emission = _emission_node(tree)
    source = group.outputs["Color"] if enabled else None
    if not enabled:
        fallback = tree.nodes.get(group.get(FALLBACK_KEY, ""))
        if fallback is None:
            return False
        source = fallback.outputs["Color"]
    tree.links.new(source, emission.inputs["Color"])
    return True
