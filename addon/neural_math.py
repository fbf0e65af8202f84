"""The numbers behind the neural material's node group (numpy, float64, no bpy): how the view
encoding maps onto what the nodes can compute, and the decoder's layers with dequantisation, the
encoding and the sigmoid folded in. `decode_folded` is what the group computes, so tests hold it
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
# sh2_reflected_nv's values after the monomials: n.v, then the unit normal (Blender object axes)
SHADING_VALUES = {"sh2_reflected_nv": ("ndv", "Nx", "Ny", "Nz")}


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
    directions recovers C to float64 rounding, signs and axis swap included."""
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
    it; shading values: n.v and the unit normal in Blender axes, for sh2_reflected_nv); a sigmoid
    layer's node values are tanh(W x + b), the true activations 0.5 * value + 0.5."""
    coef = view_encoding_map(mat.view_encoding)
    n_mono, k = coef.shape[0] - 1, neural.N_FEATURES + coef.shape[1]
    extra = len(SHADING_VALUES.get(mat.view_encoding, ()))
    a = np.zeros((k + extra, neural.N_FEATURES + n_mono + extra))
    a[:neural.N_FEATURES, :neural.N_FEATURES] = np.diag(mat.scale.astype(np.float64))
    a[neural.N_FEATURES:k, neural.N_FEATURES:neural.N_FEATURES + n_mono] = coef[1:].T
    if extra:  # n.v as is; the normal taken from Blender's axes to glTF's
        a[k, -4] = 1.0
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
    return out, np.stack([np.diag(a), c])


def decode_folded(mat: neural.NeuralMaterial, texels: np.ndarray, n: np.ndarray,
                  shading: np.ndarray | None = None) -> np.ndarray:
    """What the node group computes, in numpy: sRGB (N, 3) from texture values t (N, 8) in
    [0, 1], unit n (N, 3) (surface -> camera, Blender object axes; mirrored for a reflected
    encoding) and, for sh2_reflected_nv, `shading` (N, 4): n.v and the unit normal in Blender
    object axes. Tests hold it against neural.decode; the nodes mirror it one to one."""
    layers, (gain, shift) = folded_layers(mat)
    parts = [texels, _monomials(n, VIEW_MONOMIALS[mat.view_encoding])[:, 1:]]
    if mat.view_encoding in SHADING_VALUES:
        parts.append(shading)
    x = np.concatenate(parts, -1)
    for w, b, act in layers:
        x = x @ w.T + b
        x = np.maximum(x, 0) if act == "relu" else np.tanh(x) if act == "sigmoid" else x
    return np.clip(x * gain + shift, 0.0, 1.0)
