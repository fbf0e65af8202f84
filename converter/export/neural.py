"""`NRC_neural_material`: the data, its glTF JSON, and the reference decoder (numpy).

This module is the ground truth of the format (docs/neural_material.md is its prose): the web
preview shader and the Blender node group are tested against `decode`. It imports neither torch
nor pygltflib, so the Blender add-on can ship it as is.

Per pixel: bilinear-sample two RGBA8 feature textures at the primitive's TEXCOORD_0 (8 bytes),
dequantise (byte / 255 * scale + offset), append the SH degree-2 encoding of the view direction
(object space, from the camera towards the surface point) or, with `sh2_reflected`, of that
direction mirrored about the surface normal (`sh2_reflected_nv` appends n.v and the unit normal),
run the MLP, read sRGB. With an `environment` (version 1.1), the MLP's last layer gives six
linear values (a, b) and the colour is sigmoid(a + b * e), e an RGB environment texture looked up
(equirect) by the view direction mirrored about the normal.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import math

import numpy as np

EXTENSION = "NRC_neural_material"
N_FEATURES = 8
ACTIVATIONS = ("relu", "sigmoid", "linear")
VIEW_ENCODINGS = {"sh2": 9, "raw": 3, "sh2_reflected": 9, "sh2_reflected_nv": 13, "nv": 1}
# sh2_reflected encodes the view direction reflected about the NORMAL: a glossy surface's colour
# follows the mirror direction, the same function for every texel, so a tiny MLP need not learn
# it per texel (+1.0 dB held-out on the glossy torus knot, docs/design.md). sh2_reflected_nv adds
# what the mirror direction loses: n.v (Fresnel and grazing falloff, strongest at silhouettes) and
# the normal itself (light arriving from around n, the diffuse part) (+0.9 dB more, same capture)
REFLECTED = ("sh2_reflected", "sh2_reflected_nv", "nv")
# nv: the MLP reads only n.v besides the features; meant for materials with an environment, which
# is looked up by the mirrored direction and carries what SH2 of it was too smooth to hold (a
# 0.2-rough reflection): +1.0 dB held-out on the specular suzanne at 776 FLOP (docs/design.md);
# nrconvert now writes 9 -> 28 -> 6 there (972 FLOP, bake.neural.ENV_HIDDEN)
MAX_LAYER_WIDTH = 256  # bounds what a file may make a reader allocate (weights are read from JSON)
MAX_LAYERS = 8
# the environment's per-pixel cost: the equirect angles (atan2 and acos, ~20 each as a GPU's
# polynomial), its dequantisation (6), a + b * e (6) and the sigmoid after it (3 x 4)
ENV_LOOKUP_FLOPS = 64

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
    environment: np.ndarray | None = None  # (He, We, 3) uint8 equirect, linear data; None: version 1
    env_scale: np.ndarray | None = None  # (3,) float32: e = byte / 255 * env_scale + env_offset
    env_offset: np.ndarray | None = None

    def textures(self) -> tuple[np.ndarray, np.ndarray]:
        """The two RGBA8 images as stored (linear data, not colour)."""
        return (np.ascontiguousarray(self.features[..., :4]), np.ascontiguousarray(self.features[..., 4:]))

    def to_json(self, texture_indices: tuple[int, int], environment_index: int | None = None) -> dict:
        """The extension's JSON; `environment_index` is the environment's texture (needed when
        the material has one)."""
        out = {"featureTextures": [{"index": int(texture_indices[0])}, {"index": int(texture_indices[1])}],
               "featureScale": _floats(self.scale), "featureOffset": _floats(self.offset),
               "viewSpace": "object", "viewEncoding": self.view_encoding,
               "layers": [{"weights": _floats(layer.weights.ravel()), "bias": _floats(layer.bias),
                           "activation": layer.activation} for layer in self.layers],
               "output": "srgb"}
        if self.environment is not None:
            if environment_index is None:
                raise ValueError("a material with an environment needs the environment's texture index")
            out["environment"] = {"texture": {"index": int(environment_index)},
                                  "scale": _floats(self.env_scale), "offset": _floats(self.env_offset)}
        return out

    def flops_per_pixel(self) -> int:
        """Arithmetic per decoded pixel after texture filtering: dequantisation (2 per feature),
        view encoding, and per layer a multiply-add per weight plus its activation (sigmoid
        counted as 4: negate, exp, add, divide)."""
        # products/sums in sh2_encode; raw: normalise; reflected: + normalise n, 2 (d.n) n, subtract
        # nv: n.v is the reflection's d.n negated and clamped (3); n is already normalised
        encode = {"sh2": 25, "raw": 9, "sh2_reflected": 46, "sh2_reflected_nv": 49, "nv": 24}[self.view_encoding]
        total = 2 * N_FEATURES + encode
        if self.environment is not None:
            total += ENV_LOOKUP_FLOPS
        for layer in self.layers:
            out, inp = layer.weights.shape
            total += 2 * out * inp + out * {"relu": 1, "sigmoid": 4, "linear": 0}[layer.activation]
        return total


def from_json(ext: dict, feature_images: tuple[np.ndarray, np.ndarray],
              environment_image: np.ndarray | None = None) -> NeuralMaterial:
    """Parse and check the extension against the two decoded feature images (H, W, 4) uint8 and,
    when it has an `environment`, that texture's decoded image (H, W, 3 or 4) uint8.

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
    env = ext.get("environment")
    layers = _layers(ext.get("layers"), N_FEATURES + VIEW_ENCODINGS[encoding], 3 if env is None else 6)
    mat = NeuralMaterial(np.concatenate([a, b], -1), scale, offset, layers, encoding)
    if env is not None:
        _environment(mat, env, environment_image)
    return mat


def environment_texture_index(ext: dict) -> int | None:
    """The texture index an extension's `environment` names, None without one (readers need it
    before `from_json`, to decode the image)."""
    env = ext.get("environment") if isinstance(ext, dict) else None
    if env is None:
        return None
    try:
        index = env["texture"]["index"]
    except (KeyError, TypeError):
        raise NeuralMaterialError("environment.texture.index is missing") from None
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise NeuralMaterialError(f"environment.texture.index must be a texture index, got {index!r}")
    return index


def _environment(mat: NeuralMaterial, env: dict, image: np.ndarray | None) -> None:
    if not isinstance(env, dict):
        raise NeuralMaterialError("environment must be a JSON object")
    environment_texture_index({"environment": env})
    if mat.view_encoding not in REFLECTED:
        raise NeuralMaterialError(f"an environment needs a mirrored view (viewEncoding one of {list(REFLECTED)}), "
                                  f"not {mat.view_encoding!r}")
    if mat.layers[-1].activation != "linear":
        raise NeuralMaterialError("with an environment the last layer must be linear (sigmoid(a + b * e) follows)")
    img = None if image is None else np.asarray(image)
    if img is None or img.ndim != 3 or img.shape[2] not in (3, 4) or img.dtype != np.uint8 or min(img.shape[:2]) < 2:
        raise NeuralMaterialError("the environment texture must be an RGB(A) 8-bit image of at least 2 x 2 texels, got "
                                  f"{None if img is None else img.shape}")
    mat.environment = np.ascontiguousarray(img[..., :3])
    mat.env_scale = _vector(env.get("scale"), 3, "environment.scale")
    mat.env_offset = _vector(env.get("offset"), 3, "environment.offset")


def _layers(raw, n_in: int, n_last: int = 3) -> list[Layer]:
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
    if n_in != n_last:
        what = "(RGB)" if n_last == 3 else "(a and b for sigmoid(a + b * environment))"
        raise NeuralMaterialError(f"the last layer must have {n_last} outputs {what}, has {n_in}")
    return layers


def _vector(raw, n: int | None, what: str) -> np.ndarray:
    if not isinstance(raw, list) or (n is not None and len(raw) != n):
        raise NeuralMaterialError(f"{what} must be a list of {n if n is not None else 'some'} numbers")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw):
        raise NeuralMaterialError(f"{what} must hold numbers only")  # numpy would take "1" as 1.0
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
    and n; for nv, n.v (the mirror stays first: the environment reads it). One definition for the reference decoder and the trainable twin (bake.neural), which
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
    return np.concatenate([r, n_dot_v] if encoding == "nv" else [r, n_dot_v, n], -1)


def encode_view(d: np.ndarray, encoding: str, normals: np.ndarray | None = None) -> np.ndarray:
    return mlp_view_values(view_inputs(d, encoding, normals), encoding)


def mlp_view_values(x: np.ndarray, encoding: str) -> np.ndarray:
    """The MLP's inputs after the features, from `view_inputs`' columns (the mirror is kept out
    of the MLP with nv: only the environment reads it)."""
    if encoding == "raw":
        return x
    if encoding == "nv":
        return x[:, 3:]
    return np.concatenate([sh2_encode(x[:, :3]), x[:, 3:]], -1)



def equirect_uv(m: np.ndarray) -> np.ndarray:
    """(N, 2) texture coordinates of unit directions in the node's frame (+Y up): u = 0.5 +
    atan2(x, -z) / 2 pi (so -Z, glTF's forward, is the image's centre column), v = acos(y) / pi
    (0 looking straight up)."""
    u = 0.5 + np.arctan2(m[:, 0], -m[:, 2]) / (2 * math.pi)
    return np.stack([u, np.arccos(np.clip(m[:, 1], -1.0, 1.0)) / math.pi], -1)


def sample_equirect(tex: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup that wraps in u (REPEAT) and clamps in v (CLAMP_TO_EDGE), texel centres at
    (i + 0.5) / size as for every glTF texture. (N, C) float in texel units."""
    h, w = tex.shape[:2]
    x = uv[:, 0] * w - 0.5
    y = np.clip(uv[:, 1] * h - 0.5, 0, h - 1)
    x0f = np.floor(x)
    fx = (x - x0f)[:, None]
    x0 = np.mod(x0f.astype(np.int64), w)
    x1 = np.mod(x0 + 1, w)
    y0 = np.minimum(np.floor(y).astype(np.int64), h - 2)
    fy = (y - y0)[:, None]
    t = tex.astype(np.float64)
    top = t[y0, x0] * (1 - fx) + t[y0, x1] * fx
    bottom = t[y0 + 1, x0] * (1 - fx) + t[y0 + 1, x1] * fx
    return top * (1 - fy) + bottom * fy


def environment_values(mat: NeuralMaterial, mirrored: np.ndarray) -> np.ndarray:
    """(N, 3) dequantised environment seen along the unit mirrored directions."""
    raw = sample_equirect(mat.environment, equirect_uv(mirrored))
    return raw / 255.0 * mat.env_scale + mat.env_offset


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
    view = view_inputs(np.asarray(view_dirs, np.float64), mat.view_encoding, normals)
    x = np.concatenate([feats, mlp_view_values(view, mat.view_encoding)], -1)
    for layer in mat.layers:
        x = x @ layer.weights.astype(np.float64).T + layer.bias
        x = _activate(x, layer.activation)
    if mat.environment is not None:
        x = _activate(x[:, :3] + x[:, 3:] * environment_values(mat, view[:, :3]), "sigmoid")
    return x


def _activate(x: np.ndarray, name: str) -> np.ndarray:
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))
    return x


def mlp_input_size(encoding: str) -> int:
    return N_FEATURES + VIEW_ENCODINGS[encoding]
