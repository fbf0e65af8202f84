"""The numbers behind the neural material's node group (numpy, float64, no bpy): how the view
encoding maps onto what the nodes can compute, and the decoder's layers with dequantisation, the
encoding and the sigmoid folded in (with an environment, its dequantisation too), and where the
group looks the environment up. `decode_folded` is what the group computes, so tests hold it
against the reference decoder without rendering; neural_nodes.py builds the nodes from these.
"""
from __future__ import annotations

import numpy as np

from ._vendor import neural

# Blender object axes -> glTF node axes (the importer maps glTF (x, y, z) to Blender (x, -z, y))
BLENDER_TO_GLTF = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
# The view values the group computes from n = unit direction surface -> camera, Blender object axes
VIEW_MONOMIALS = {"sh2": ("nx", "ny", "nz", "nx*nx", "ny*ny", "nx*ny", "ny*nz", "nx*nz"),
                  "raw": ("nx", "ny", "nz")}
VIEW_MONOMIALS["sh2_reflected"] = VIEW_MONOMIALS["sh2"]  # n is mirrored about the normal first
VIEW_MONOMIALS["sh2_reflected_nv"] = VIEW_MONOMIALS["sh2"]
VIEW_MONOMIALS["nv"] = ()  # the mirrored n feeds only the environment lookup
# the values after the monomials: n.v, then (sh2_reflected_nv) the unit normal in Blender axes
SHADING_VALUES = {"sh2_reflected_nv": ("ndv", "Nx", "Ny", "Nz"), "nv": ("ndv",)}


def camera_to_surface_gltf(n: np.ndarray) -> np.ndarray:
    """Decoder view directions (camera -> surface, glTF local axes) from the group's n (N, 3):
    unit vectors surface -> camera in Blender object axes."""
    return -np.asarray(n, np.float64) @ BLENDER_TO_GLTF.T


def _monomials(n: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    comp = {"nx": n[:, 0], "ny": n[:, 1], "nz": n[:, 2]}
    cols = [np.ones(len(n))]
    for name in names:
        a, _, b = name.partition("*")
        cols.append(comp[a] * comp[b] if b else comp[a])
    return np.stack(cols, -1)


def view_encoding_map(encoding: str) -> np.ndarray:
    """C (1 + monomials, encoding size) with encode_view(d) = [1, monomials(n)] @ C on unit n.

    On the unit sphere the SH of degree <= 2 span exactly {1, x, y, z, x^2, y^2, xy, yz, xz}
    (z^2 = 1 - x^2 - y^2), so a least-squares fit against the reference encoder at a few dozen
    directions recovers C to float64 rounding, signs and axis swap included. `nv` has no
    monomials (its one value is a shading value): C is (1, 0)."""
    if not VIEW_MONOMIALS[encoding]:
        return np.zeros((1, 0))
    rng = np.random.default_rng(0)
    n = rng.normal(size=(64, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    basis = _monomials(n, VIEW_MONOMIALS[encoding])
    # a reflected encoding's n is already mirrored (_view_values): what remains is the plain one
    plain = "sh2" if neural.uses_normals(encoding) else encoding
    target = neural.encode_view(camera_to_surface_gltf(n), plain)
    coef, *_ = np.linalg.lstsq(basis, target, rcond=None)
    if np.abs(basis @ coef - target).max() > 1e-9:
        raise RuntimeError(f"view encoding {encoding!r} is not spanned by {VIEW_MONOMIALS[encoding]}")
    coef[np.abs(coef) < 1e-12] = 0.0  # exact zeros: no nodes for terms the encoding lacks
    return coef


def folded_layers(mat: neural.NeuralMaterial) -> tuple[list[tuple[np.ndarray, np.ndarray, str]], np.ndarray]:
    """([(W, b, activation)] acting on node values, (scale, offset) of the final sRGB).

    Layer 1 reads [t_0..t_7, monomials(n), shading values] (t = byte / 255 as the textures give
    it; shading values: n.v, and for sh2_reflected_nv the unit normal in Blender axes); a sigmoid
    layer's node values are tanh(W x + b), the true activations 0.5 * value + 0.5. With an
    environment the last layer's six node values are (a', b') with a' + b' * t_env = (a + b * e)
    / 2 (t_env = environment byte / 255; activation "environment"), and the colour is 0.5 *
    tanh(a' + b' * t_env) + 0.5: e's dequantisation and the sigmoid's halving folded in."""
    coef = view_encoding_map(mat.view_encoding)
    n_mono, k = coef.shape[0] - 1, neural.N_FEATURES + coef.shape[1]
    extra = len(SHADING_VALUES.get(mat.view_encoding, ()))
    a = np.zeros((k + extra, neural.N_FEATURES + n_mono + extra))
    a[:neural.N_FEATURES, :neural.N_FEATURES] = np.diag(mat.scale.astype(np.float64))
    a[neural.N_FEATURES:k, neural.N_FEATURES:neural.N_FEATURES + n_mono] = coef[1:].T
    if extra:  # n.v as is; with sh2_reflected_nv the normal taken from Blender's axes to glTF's
        a[k, neural.N_FEATURES + n_mono] = 1.0
    if extra == 4:
        a[k + 1:, -3:] = BLENDER_TO_GLTF
    c = np.concatenate([mat.offset.astype(np.float64), coef[0], np.zeros(extra)])
    out = []
    for layer in mat.layers:
        w = layer.weights.astype(np.float64)
        w_eff, b_eff = w @ a, w @ c + layer.bias.astype(np.float64)
        if layer.activation == "sigmoid":
            w_eff, b_eff = 0.5 * w_eff, 0.5 * b_eff
            gain, shift = np.full(len(b_eff), 0.5), np.full(len(b_eff), 0.5)
        else:
            gain, shift = np.ones(len(b_eff)), np.zeros(len(b_eff))
        out.append((w_eff, b_eff, layer.activation))
        a, c = np.diag(gain), shift
    if mat.environment is None:
        return out, np.stack([np.diag(a), c])
    w, b, _ = out[-1]  # linear: (a, b) = (w[:3], w[3:]) x + ...; e = scale * t_env + offset
    env_scale, env_offset = (v.astype(np.float64)[:, None] for v in (mat.env_scale, mat.env_offset))
    out[-1] = (0.5 * np.concatenate([w[:3] + env_offset * w[3:], env_scale * w[3:]]),
               0.5 * np.concatenate([b[:3] + env_offset[:, 0] * b[3:], env_scale[:, 0] * b[3:]]), "environment")
    return out, np.full((2, 3), 0.5)


def environment_coordinates(n: np.ndarray) -> np.ndarray:
    """(N, 2) Image Texture coordinates (Blender's: y = 0 is the image's bottom row) of the
    decoder's equirect (u, v) for the group's unit n (mirrored, surface -> camera, Blender
    object axes). The decoder's m = (-n_x, -n_z, n_y) in glTF axes, so its u = 0.5 + atan2(m.x,
    -m.z) / 2 pi = 0.5 + atan2(-n_x, -n_y) / 2 pi, which is atan2(n_x, n_y) / 2 pi up to a whole
    turn (the lookup repeats in u), and 1 - v = 1 - acos(-n_z) / pi = acos(n_z) / pi."""
    n = np.asarray(n, np.float64)
    return np.stack([np.arctan2(n[:, 0], n[:, 1]) / (2 * np.pi), np.arccos(np.clip(n[:, 2], -1.0, 1.0)) / np.pi], -1)


def environment_taps(n: np.ndarray, width: int, height: int) -> tuple[np.ndarray, ...]:
    """(x0, y0, fx, fy): the bilinear lookup the group does by hand, in texels of the image as
    Blender stores it (bottom row first): x = u W - 0.5 (wrapped by the texture's REPEAT), y =
    clamp(v H - 0.5, 0, H - 1) (CLAMP_TO_EDGE), x0 = floor(x), y0 = min(floor(y), H - 2). The
    group reads the four texels with Closest lookups at their centres (x0 + i + 0.5) / W, (y0 + j
    + 0.5) / H: one Linear lookup would wrap v too, and EEVEE would filter it through mipmaps."""
    uv = environment_coordinates(n)
    x = uv[:, 0] * width - 0.5
    y = np.clip(uv[:, 1] * height - 0.5, 0.0, height - 1.0)
    x0, y0 = np.floor(x), np.minimum(np.floor(y), height - 2.0)
    return x0, y0, x - x0, y - y0


def sample_repeat(tex: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """What one Linear + REPEAT Image Texture node returns for an image stored bottom row first,
    at (N, 2) coordinates: bilinear between texel centres (i + 0.5) / size, wrapping in both axes.
    (N, C) in texel units. (The group does not use it: see environment_taps.)"""
    h, w = tex.shape[:2]
    x, y = coords[:, 0] * w - 0.5, coords[:, 1] * h - 0.5
    x0f, y0f = np.floor(x), np.floor(y)
    fx, fy = (x - x0f)[:, None], (y - y0f)[:, None]
    x0, y0 = np.mod(x0f.astype(np.int64), w), np.mod(y0f.astype(np.int64), h)
    x1, y1 = np.mod(x0 + 1, w), np.mod(y0 + 1, h)
    t = tex.astype(np.float64)
    return (t[y0, x0] * (1 - fx) + t[y0, x1] * fx) * (1 - fy) + (t[y1, x0] * (1 - fx) + t[y1, x1] * fx) * fy


def environment_texels(mat: neural.NeuralMaterial, n: np.ndarray) -> np.ndarray:
    """(N, 3) environment values in [0, 1] (bytes / 255) the group's lookup gives for its unit
    mirrored n: the glTF image (top row first) as Blender stores it, at environment_taps."""
    env = mat.environment[::-1].astype(np.float64)
    h, w = env.shape[:2]
    x0, y0, fx, fy = environment_taps(n, w, h)
    xs = [np.mod(x0.astype(np.int64) + i, w) for i in (0, 1)]
    rows = [env[y0.astype(np.int64) + j] for j in (0, 1)]
    fx, fy = fx[:, None], fy[:, None]
    near, far = ((row[np.arange(len(n)), xs[0]] * (1 - fx) + row[np.arange(len(n)), xs[1]] * fx) for row in rows)
    return (near * (1 - fy) + far * fy) / 255.0


def decode_folded(mat: neural.NeuralMaterial, texels: np.ndarray, n: np.ndarray,
                  shading: np.ndarray | None = None, environment: np.ndarray | None = None) -> np.ndarray:
    """What the node group computes, in numpy: sRGB (N, 3) from texture values t (N, 8) in
    [0, 1], unit n (N, 3) (surface -> camera, Blender object axes; mirrored for a reflected
    encoding), `shading` (N, 4) for sh2_reflected_nv (n.v and the unit normal in Blender object
    axes; (N, 1) n.v for nv) and, for a material with an environment, `environment` (N, 3): the
    environment texture's values in [0, 1] (default: environment_texels(mat, n), the group's own
    lookup). Tests hold it against neural.decode; the nodes mirror it one to one."""
    layers, (gain, shift) = folded_layers(mat)
    parts = [texels, _monomials(n, VIEW_MONOMIALS[mat.view_encoding])[:, 1:]]
    if mat.view_encoding in SHADING_VALUES:
        parts.append(shading[:, :len(SHADING_VALUES[mat.view_encoding])])
    x = np.concatenate(parts, -1)
    for w, b, act in layers:
        x = x @ w.T + b
        x = np.maximum(x, 0) if act == "relu" else np.tanh(x) if act == "sigmoid" else x
    if mat.environment is not None:
        env = environment_texels(mat, n) if environment is None else environment
        x = np.tanh(x[:, :3] + x[:, 3:] * env)
    return np.clip(x * gain + shift, 0.0, 1.0)
