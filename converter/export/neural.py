"""`NRC_neural_material`: the data, its glTF JSON, and the reference decoder (numpy).

This module is the ground truth of the format (docs/neural_material.md is its prose): the web
preview shader and the Blender node group are tested against `decode`. It imports neither torch
nor pygltflib, so the Blender add-on can ship it as is.

Per pixel: bilinear-sample two RGBA8 feature textures at the primitive's TEXCOORD_0 (8 bytes),
dequantise (byte / 255 * scale + offset), append the SH degree-2 encoding of the view direction
(object space, from the camera towards the surface point) or, with `sh2_reflected`, of that
direction mirrored about the surface normal (`sh2_reflected_nv` appends n.v and the unit normal),
run the MLP, read sRGB.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

EXTENSION = "NRC_neural_material"
N_FEATURES = 8
ACTIVATIONS = ("relu", "sigmoid", "linear")
VIEW_ENCODINGS = {"sh2": 9, "raw": 3, "sh2_reflected": 9, "sh2_reflected_nv": 13}
# sh2_reflected encodes the view direction reflected about the NORMAL: a glossy surface's colour
# follows the mirror direction, the same function for every texel, so a tiny MLP need not learn
# it per texel (+1.0 dB held-out on the glossy torus knot, docs/design.md). sh2_reflected_nv adds
# what the mirror direction loses: n.v (Fresnel and grazing falloff, strongest at silhouettes) and
# the normal itself (light arriving from around n, the diffuse part) (+0.9 dB more, same capture)
REFLECTED = ("sh2_reflected", "sh2_reflected_nv")
MAX_LAYER_WIDTH = 256  # bounds what a file may make a reader allocate (weights are read from JSON)
MAX_LAYERS = 8

# Real spherical harmonics, degrees 0..2 (the same constants and sign convention as instant-ngp)
SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792,
         0.5462742152960396)


class NeuralMaterialError(ValueError):
    """The extension's JSON or textures do not describe a decodable material."""


@dataclass
class Layer:
    weights: np.ndarray  # (out, in) float32, row-major as stored
    bias: np.ndarray  # (out,) float32
    activation: str = "relu"


@dataclass
class NeuralMaterial:
    """8 quantised feature channels per texel plus the MLP that turns them into colour."""

    features: np.ndarray  # (H, W, 8) uint8: channels 0-3 are texture 0's RGBA, 4-7 texture 1's
    scale: np.ndarray  # (8,) float32
    offset: np.ndarray  # (8,) float32
    layers: list[Layer] = field(default_factory=list)
    view_encoding: str = "sh2"

    def textures(self) -> tuple[np.ndarray, np.ndarray]:
        """The two RGBA8 images as stored (linear data, not colour)."""
        return (np.ascontiguousarray(self.features[..., :4]), np.ascontiguousarray(self.features[..., 4:]))

    def to_json(self, texture_indices: tuple[int, int]) -> dict:
        return {"featureTextures": [{"index": int(texture_indices[0])}, {"index": int(texture_indices[1])}],
                "featureScale": _floats(self.scale), "featureOffset": _floats(self.offset),
                "viewSpace": "object", "viewEncoding": self.view_encoding,
                "layers": [{"weights": _floats(layer.weights.ravel()), "bias": _floats(layer.bias),
                            "activation": layer.activation} for layer in self.layers],
                "output": "srgb"}

    def flops_per_pixel(self) -> int:
        """Arithmetic per decoded pixel after texture filtering: dequantisation (2 per feature),
        view encoding, and per layer a multiply-add per weight plus its activation (sigmoid
        counted as 4: negate, exp, add, divide)."""
        # products/sums in sh2_encode; raw: normalise; reflected: + normalise n, 2 (d.n) n, subtract
        # nv: n.v is the reflection's d.n negated and clamped (3); n is already normalised
        encode = {"sh2": 25, "raw": 9, "sh2_reflected": 46, "sh2_reflected_nv": 49}[self.view_encoding]
        total = 2 * N_FEATURES + encode
        for layer in self.layers:
            out, inp = layer.weights.shape
            total += 2 * out * inp + out * {"relu": 1, "sigmoid": 4, "linear": 0}[layer.activation]
        return total


def from_json(ext: dict, feature_images: tuple[np.ndarray, np.ndarray]) -> NeuralMaterial:
    """Parse and check the extension against the two decoded feature images (H, W, 4) uint8.

    Every inconsistency a malformed file can carry raises NeuralMaterialError with what is wrong,
    so readers can warn and fall back to the unlit texture.
    """
    if not isinstance(ext, dict):
        raise NeuralMaterialError(f"{EXTENSION} must be a JSON object")
    a, b = (np.asarray(img) for img in feature_images)
    if a.ndim != 3 or a.shape[2] != 4 or a.shape != b.shape or a.dtype != np.uint8 or b.dtype != np.uint8:
        raise NeuralMaterialError(f"feature textures must be two RGBA8 images of one size, got {a.shape} and {b.shape}")
    encoding = ext.get("viewEncoding", "sh2")
    if encoding not in VIEW_ENCODINGS:
        raise NeuralMaterialError(f"viewEncoding {encoding!r} is not one of {sorted(VIEW_ENCODINGS)}")
    if ext.get("viewSpace", "object") != "object" or ext.get("output", "srgb") != "srgb":
        raise NeuralMaterialError("only viewSpace 'object' and output 'srgb' are defined")
    scale = _vector(ext.get("featureScale"), N_FEATURES, "featureScale")
    offset = _vector(ext.get("featureOffset"), N_FEATURES, "featureOffset")
    layers = _layers(ext.get("layers"), N_FEATURES + VIEW_ENCODINGS[encoding])
    return NeuralMaterial(np.concatenate([a, b], -1), scale, offset, layers, encoding)


def _layers(raw, n_in: int) -> list[Layer]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_LAYERS:
        raise NeuralMaterialError(f"layers must be a list of 1..{MAX_LAYERS} objects")
    layers = []
    for i, spec in enumerate(raw):
        if not isinstance(spec, dict):
            raise NeuralMaterialError(f"layers[{i}] must be an object")
        bias = _vector(spec.get("bias"), None, f"layers[{i}].bias")
        n_out = len(bias)
        if not 1 <= n_out <= MAX_LAYER_WIDTH:
            raise NeuralMaterialError(f"layers[{i}] has {n_out} outputs (1..{MAX_LAYER_WIDTH} allowed)")
        weights = _vector(spec.get("weights"), n_out * n_in, f"layers[{i}].weights").reshape(n_out, n_in)
        act = spec.get("activation", "linear")
        if act not in ACTIVATIONS:
            raise NeuralMaterialError(f"layers[{i}].activation {act!r} is not one of {list(ACTIVATIONS)}")
        layers.append(Layer(weights, bias, act))
        n_in = n_out
    if n_in != 3:
        raise NeuralMaterialError(f"the last layer must have 3 outputs (RGB), has {n_in}")
    return layers


def _vector(raw, n: int | None, what: str) -> np.ndarray:
    if not isinstance(raw, list) or (n is not None and len(raw) != n):
        raise NeuralMaterialError(f"{what} must be a list of {n if n is not None else 'some'} numbers")
    try:
        out = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise NeuralMaterialError(f"{what} must hold numbers only") from None
    if out.ndim != 1 or not np.isfinite(out).all():
        raise NeuralMaterialError(f"{what} must hold finite numbers only")
    return out.astype(np.float32)


def _floats(a: np.ndarray) -> list[float]:
    """float32 values as the shortest decimal strings that read back to the same float32."""
    return [float(np.format_float_positional(v, unique=True)) for v in np.asarray(a, np.float32).ravel()]


def sh2_encode(d: np.ndarray) -> np.ndarray:
    """(N, 9) real SH basis, degrees 0..2, of unit directions (N, 3)."""
    x, y, z = d[:, 0], d[:, 1], d[:, 2]
    return np.stack([np.full_like(x, SH_C0), -SH_C1 * y, SH_C1 * z, -SH_C1 * x,
                     SH_C2[0] * x * y, SH_C2[1] * y * z, SH_C2[2] * (2 * z * z - x * x - y * y),
                     SH_C2[3] * x * z, SH_C2[4] * (x * x - y * y)], -1)


def uses_normals(encoding: str) -> bool:
    return encoding in REFLECTED


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def reflect(d: np.ndarray, n: np.ndarray) -> np.ndarray:
    """d mirrored about the unit normal of n: d - 2 (d . n) n (GLSL's reflect). Unit d gives unit output."""
    n = _unit(n)
    return d - 2.0 * (d * n).sum(-1, keepdims=True) * n


def view_inputs(d: np.ndarray, encoding: str, normals: np.ndarray | None = None) -> np.ndarray:
    """What the MLP reads besides features, before the SH basis is applied: the unit direction
    (mirrored about the unit normal for a reflected encoding) and, for sh2_reflected_nv, n.v
    and n. One definition for the reference decoder and the trainable twin (bake.neural), which
    applies the SH basis in torch."""
    d = _unit(d)
    if not uses_normals(encoding):
        return d
    if normals is None:
        raise ValueError(f"viewEncoding {encoding!r} needs the surface normals")
    n = _unit(np.asarray(normals, np.float64))
    r = _unit(reflect(d, n))
    if encoding == "sh2_reflected":
        return r
    n_dot_v = np.clip(-(d * n).sum(-1, keepdims=True), 0.0, 1.0)  # v: surface -> camera
    return np.concatenate([r, n_dot_v, n], -1)


def encode_view(d: np.ndarray, encoding: str, normals: np.ndarray | None = None) -> np.ndarray:
    x = view_inputs(d, encoding, normals)
    return x if encoding == "raw" else np.concatenate([sh2_encode(x[:, :3]), x[:, 3:]], -1)


def sample_bilinear(tex: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """glTF texture lookup without mipmaps: uv (0, 0) is the image's top-left corner, texel centres
    sit at (i + 0.5) / size, clamp to edge. Returns (N, C) float in texel units (bytes here)."""
    h, w = tex.shape[:2]
    x = np.clip(uv[:, 0] * w - 0.5, 0, w - 1)
    y = np.clip(uv[:, 1] * h - 0.5, 0, h - 1)
    x0 = np.minimum(np.floor(x).astype(np.int64), w - 2 if w > 1 else 0)
    y0 = np.minimum(np.floor(y).astype(np.int64), h - 2 if h > 1 else 0)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    t = tex.astype(np.float64)
    top = t[y0, x0] * (1 - fx) + t[y0, x1] * fx
    bottom = t[y1, x0] * (1 - fx) + t[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def decode(mat: NeuralMaterial, uv: np.ndarray, view_dirs: np.ndarray, normals: np.ndarray | None = None
           ) -> np.ndarray:
    """sRGB colour in [0, 1] (N, 3) at texture coordinates `uv` (N, 2) seen along `view_dirs`
    (N, 3, object space, camera -> surface; need not be unit length), with the interpolated
    NORMAL (N, 3, object space, any length) for a reflected encoding. Float64 throughout: this is
    the reference every other decoder is measured against."""
    feats = sample_bilinear(mat.features, uv) / 255.0 * mat.scale + mat.offset
    x = np.concatenate([feats, encode_view(np.asarray(view_dirs, np.float64), mat.view_encoding, normals)], -1)
    for layer in mat.layers:
        x = x @ layer.weights.astype(np.float64).T + layer.bias
        x = _activate(x, layer.activation)
    return x


def _activate(x: np.ndarray, name: str) -> np.ndarray:
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))
    return x


def mlp_input_size(encoding: str) -> int:
    return N_FEATURES + VIEW_ENCODINGS[encoding]
