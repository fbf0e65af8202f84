"""NRC_neural_material: the reference decoder, its trainable twin, the JSON, the GLB round trip,
`nrconvert render`, and what malformed files do."""
from __future__ import annotations

import copy
import json
from dataclasses import replace
import subprocess
import sys

import numpy as np
import pytest
import torch

from nrconvert.bake.neural import HIDDEN, Decoder
from nrconvert.export.glb import write_glb
from nrconvert.export.neural import (EXTENSION, NeuralMaterialError, decode, from_json, sample_bilinear,
                                     sh2_encode)
from nrconvert.export.reader import GlbError, lod_primitives, read_glb
from nrconvert.render.asset_view import render_primitive, to_asset_frame
from tests.test_export_pbr import make_pbr_asset, validator_available  # noqa: F401


def random_decoder(size: int = 16, seed: int = 0) -> Decoder:
    dec = Decoder(size, seed=seed)
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed + 1)
        dec.features.copy_(torch.rand(dec.features.shape, generator=g))
        dec.scale.copy_(torch.rand(8, generator=g) * 4 - 2)
        dec.offset.copy_(torch.rand(8, generator=g) - 0.5)
        for p in dec.mlp.parameters():
            p.mul_(3.0)  # well away from a constant output
    return dec


def random_material(size: int = 16, seed: int = 0):
    return random_decoder(size, seed).export(np.ones((size, size), bool))


def test_sh2_is_orthonormal_on_the_sphere():
    rng = np.random.default_rng(0)
    d = rng.normal(size=(400_000, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    y = sh2_encode(d)
    gram = 4 * np.pi * (y.T @ y) / len(d)  # Monte-Carlo integral over the sphere
    assert np.allclose(gram, np.eye(9), atol=0.02)


def test_sample_bilinear_matches_grid_sample():
    rng = np.random.default_rng(1)
    tex = rng.integers(0, 256, (7, 11, 4), dtype=np.uint8)
    uv = rng.uniform(-0.1, 1.1, (500, 2))
    ref = torch.nn.functional.grid_sample(torch.from_numpy(tex).double().permute(2, 0, 1)[None],
                                          torch.from_numpy(uv * 2 - 1)[None, :, None], mode="bilinear",
                                          padding_mode="border", align_corners=False)[0, :, :, 0].t().numpy()
    assert np.allclose(sample_bilinear(tex, uv), ref, atol=1e-9)


def test_reference_decoder_matches_the_trainable_decoder():
    dec = random_decoder()
    mat = dec.export(np.ones((16, 16), bool))
    rng = np.random.default_rng(2)
    uv = rng.uniform(0, 1, (2000, 2)).astype(np.float32)
    d = rng.normal(size=(2000, 3)).astype(np.float32)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    with torch.no_grad():
        twin = dec(torch.from_numpy(uv), torch.from_numpy(d)).double().numpy()
    ref = decode(mat, uv, d * 3.7)  # the reference normalises the view direction itself
    assert ref.std() > 0.05  # not a constant: the comparison means something
    assert np.abs(ref - twin).max() < 1e-5


def test_reflected_encoding_mirrors_the_view_about_the_normal():
    """sh2_reflected decodes SH2(d - 2 (d.n) n) for unit d and n, whatever the lengths given; the
    trainable twin, fed the mirrored directions (as bake.neural.view_samples makes them), agrees;
    and the mirror matters: decoding the same material as plain sh2 gives other colours."""
    dec = random_decoder(seed=3)
    dec.encoding = "sh2_reflected"
    mat = dec.export(np.ones((16, 16), bool))
    assert mat.view_encoding == "sh2_reflected" and from_json(json.loads(json.dumps(mat.to_json((0, 1)))),
                                                              mat.textures()).view_encoding == "sh2_reflected"
    rng = np.random.default_rng(4)
    uv = rng.uniform(0, 1, (2000, 2))
    d, n = (rng.normal(size=(2000, 3)) for _ in range(2))
    du, nu = (v / np.linalg.norm(v, axis=1, keepdims=True) for v in (d, n))
    mirrored = du - 2 * (du * nu).sum(1, keepdims=True) * nu
    ref = decode(mat, uv, d * 2.5, n * 0.3)
    assert np.abs(ref - decode(replace(mat, view_encoding="sh2"), uv, mirrored)).max() < 1e-12
    with torch.no_grad():
        twin = dec(torch.from_numpy(uv).float(), torch.from_numpy(mirrored).float()).double().numpy()
    assert np.abs(ref - twin).max() < 1e-5
    assert np.abs(ref - decode(replace(mat, view_encoding="sh2"), uv, d)).mean() > 0.05
    with pytest.raises(ValueError, match="normals"):
        decode(mat, uv, d)


def test_nv_encoding_adds_incidence_and_normal():
    """sh2_reflected_nv decodes [SH2(mirrored d), clamp(-d.n, 0, 1), n] for unit d and n; the
    trainable twin, fed view_samples' layout (mirrored d, n.v, n), agrees; and both extras
    matter: a reversed normal (same mirror) decodes other colours."""
    from nrconvert.export.neural import reflect

    rng = np.random.default_rng(6)
    uv = rng.uniform(0, 1, (2000, 2))
    d, n = (rng.normal(size=(2000, 3)) for _ in range(2))
    du, nu = (v / np.linalg.norm(v, axis=1, keepdims=True) for v in (d, n))
    dec = Decoder(16, seed=5, encoding="sh2_reflected_nv")
    with torch.no_grad():
        dec.features.uniform_(0, 1, generator=torch.Generator().manual_seed(7))
        for layer in dec.mlp:
            layer.weight.mul_(3.0)
    mat = dec.export(np.ones((16, 16), bool))
    assert mat.layers[0].weights.shape == (HIDDEN[0], 21) and mat.flops_per_pixel() <= 1000
    assert from_json(json.loads(json.dumps(mat.to_json((0, 1)))), mat.textures()).view_encoding == "sh2_reflected_nv"
    mirrored = reflect(du, nu)
    ndv = np.clip(-(du * nu).sum(1, keepdims=True), 0, 1)
    inputs = np.concatenate([mirrored, ndv, nu], 1)
    ref = decode(mat, uv, d * 2.5, n * 0.3)
    feats = sample_bilinear(mat.features, uv) / 255.0 * mat.scale + mat.offset
    x = np.concatenate([feats, sh2_encode(mirrored), ndv, nu], 1)
    for layer in mat.layers:
        x = x @ layer.weights.astype(np.float64).T + layer.bias
        x = np.maximum(x, 0) if layer.activation == "relu" else 1 / (1 + np.exp(-x))
    assert ref.std() > 0.05 and np.abs(ref - x).max() < 1e-12
    with torch.no_grad():
        twin = dec(torch.from_numpy(uv).float(), torch.from_numpy(inputs).float()).double().numpy()
    assert np.abs(ref - twin).max() < 1e-5
    assert np.abs(ref - decode(mat, uv, d, -n)).mean() > 0.02
    with pytest.raises(ValueError, match="normals"):
        decode(mat, uv, d)


def test_decoder_budget():
    mat = random_material()
    assert [layer.weights.shape for layer in mat.layers] == [(HIDDEN[0], 17), (HIDDEN[1], HIDDEN[0]), (3, HIDDEN[1])]
    assert mat.flops_per_pixel() <= 1000
    assert replace(mat, view_encoding="sh2_reflected").flops_per_pixel() <= 1000


def test_json_round_trip_is_exact():
    mat = random_material()
    ext = json.loads(json.dumps(mat.to_json((3, 4))))
    back = from_json(ext, mat.textures())
    uv = np.random.default_rng(3).uniform(0, 1, (300, 2))
    d = np.random.default_rng(4).normal(size=(300, 3))
    assert np.array_equal(decode(back, uv, d), decode(mat, uv, d))


@pytest.mark.parametrize("breakage, message", [
    (lambda e: e["layers"][0].__setitem__("weights", e["layers"][0]["weights"][:-1]), "layers[0].weights"),
    (lambda e: e["layers"][1].__setitem__("activation", "tanh"), "activation"),
    (lambda e: e["layers"][2].__setitem__("bias", [0.0, 0.0]), "layers[2].weights"),
    (lambda e: e.__setitem__("featureScale", [1.0] * 7), "featureScale"),
    (lambda e: e.__setitem__("featureOffset", ["a"] * 8), "featureOffset"),
    (lambda e: e.__setitem__("featureScale", ["1"] * 8), "numbers only"),
    (lambda e: e.__setitem__("viewEncoding", "sh9"), "viewEncoding"),
    (lambda e: e["layers"][0].__setitem__("bias", [float("nan")] * HIDDEN[0]), "finite"),
    (lambda e: e.__setitem__("layers", []), "layers"),
])
def test_malformed_json_is_a_clear_error(breakage, message):
    mat = random_material()
    ext = copy.deepcopy(mat.to_json((0, 1)))
    breakage(ext)
    with pytest.raises(NeuralMaterialError, match=message.replace("[", r"\[").replace("]", r"\]")):
        from_json(ext, mat.textures())


def test_wrong_texture_shapes_are_refused():
    mat = random_material()
    a, b = mat.textures()
    with pytest.raises(NeuralMaterialError, match="RGBA8"):
        from_json(mat.to_json((0, 1)), (a, b[:8]))


@pytest.fixture(scope="module")
def neural_glb(tmp_path_factory):
    asset = make_pbr_asset()
    for k, lod in enumerate(asset.lods):
        lod.maps.neural = random_material(32 >> k, seed=k)
    path = tmp_path_factory.mktemp("neural") / "neural.glb"
    write_glb(asset, path, version="test")
    return asset, path


def test_glb_carries_the_extension_on_the_captured_variant(neural_glb):
    asset, path = neural_glb
    doc = read_glb(path).doc
    assert EXTENSION in doc["extensionsUsed"] and EXTENSION not in doc.get("extensionsRequired", [])
    prims = lod_primitives(read_glb(path))
    assert len(prims) == len(asset.lods)
    for lod, prim in zip(asset.lods, prims):
        mat = doc["materials"][prim.captured_material]
        assert "KHR_materials_unlit" in mat["extensions"]  # fallback for every other reader
        assert np.array_equal(prim.neural.features, lod.maps.neural.features)
        uv = np.random.default_rng(5).uniform(0, 1, (200, 2))
        d = np.random.default_rng(6).normal(size=(200, 3))
        assert np.allclose(decode(prim.neural, uv, d), decode(lod.maps.neural, uv, d), atol=1e-6)
        sampler = doc["samplers"][doc["textures"][mat["extensions"][EXTENSION]["featureTextures"][0]["index"]]["sampler"]]
        assert sampler["minFilter"] == 9729  # LINEAR, no mipmaps: features are data


def test_glb_with_neural_material_validates(neural_glb, validator_available):  # noqa: F811
    from nrconvert.export.validate import assert_valid

    report = assert_valid(neural_glb[1])  # raises on any error or unexpected warning
    assert report.errors == 0, report.format()
    codes = {m["code"] for m in report.messages if m["severity"] == "warning"}
    assert codes <= {"UNSUPPORTED_EXTENSION", "MULTIPLE_EXTENSIONS"}, codes


def test_render_command_writes_the_reference_render(neural_glb, tmp_path):
    asset, path = neural_glb
    cams = tmp_path / "cams.json"
    f = asset.cameras[0]
    (tmp_path / "photos").mkdir()
    from PIL import Image
    Image.new("RGB", (f.width, f.height)).save(tmp_path / "photos" / "r_000.png")
    cams.write_text(json.dumps({"fl_x": f.fx, "fl_y": f.fy, "cx": f.cx, "cy": f.cy, "w": f.width, "h": f.height,
                                "frames": [{"file_path": "photos/r_000.png", "transform_matrix": f.c2w.tolist()}]}))
    out = tmp_path / "view.png"
    run = subprocess.run([sys.executable, "-m", "nrconvert", "render", str(path), "--camera", str(cams),
                          "-o", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    img = np.asarray(Image.open(out)).astype(np.float64) / 255
    prim = lod_primitives(read_glb(path))[0]
    ref, hit = render_primitive(prim, to_asset_frame(f, "z"))
    assert hit.mean() > 0.05
    assert np.array_equal(img[..., 3] > 0.5, hit)
    assert np.abs(img[..., :3] - ref).max() <= 0.5 / 255 + 1e-9
    aa_out = tmp_path / "view_aa.png"
    run = subprocess.run([sys.executable, "-m", "nrconvert", "render", str(path), "--camera", str(cams),
                          "-o", str(aa_out), "--samples", "3"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    aa = np.asarray(Image.open(aa_out)).astype(np.float64) / 255
    ref_aa, cover = render_primitive(prim, to_asset_frame(f, "z"), samples=3)
    assert np.abs(aa[..., 3] - cover).max() <= 0.5 / 255 + 1e-9
    edge = (cover > 0) & (cover < 1)
    assert edge.sum() > 0.2 * np.sqrt(hit.sum())  # the silhouette is partly covered
    full = cover == 1  # straight alpha in the file: premultiplied back, it is the render
    assert np.abs(aa[..., :3] * aa[..., 3:] - ref_aa)[full].max() <= 0.5 / 255 + 1e-9


def test_render_command_refuses_a_truncated_glb(neural_glb, tmp_path):
    bad = tmp_path / "bad.glb"
    bad.write_bytes(neural_glb[1].read_bytes()[:5000])
    out = tmp_path / "x.png"
    run = subprocess.run([sys.executable, "-m", "nrconvert", "render", str(bad), "--camera", str(bad),
                          "-o", str(out)], capture_output=True, text=True)
    assert run.returncode == 9 and "truncated" in run.stderr and not out.exists()
    with pytest.raises(GlbError):
        read_glb(bad)


def test_worked_example_of_the_spec():
    """docs/neural_material.md's worked example, number for number."""
    from nrconvert.export.neural import Layer, NeuralMaterial

    feats = np.zeros((2, 2, 8), np.uint8)
    feats[0, 0] = [255, 0, 128, 64, 0, 255, 32, 200]
    w1 = np.zeros((2, 17), np.float32)
    w1[0, 0], w1[0, 8], w1[1, 1], w1[1, 10] = 1.0, 0.5, 1.0, -2.0
    mat = NeuralMaterial(feats, np.array([2, 2, 1, 1, 1, 1, 0.5, 0.5], np.float32),
                         np.array([-1, -1, 0, 0, 0, 0, -0.25, -0.25], np.float32),
                         [Layer(w1, np.array([0, 0.25], np.float32), "relu"),
                          Layer(np.array([[2, 0], [0, 2], [1, 1]], np.float32), np.array([-1, -1, 0], np.float32), "sigmoid")])
    out = decode(mat, np.array([[0.25, 0.25]]), np.array([[0.0, 0.6, -0.8]]))
    assert np.allclose(out, [[0.782806, 0.281614, 0.763653]], atol=1e-6)
    assert mat.flops_per_pixel() == 16 + 25 + 2 * 2 * 17 + 2 + 2 * 3 * 2 + 3 * 4
    mirrored = replace(mat, view_encoding="sh2_reflected")  # the example's second part
    out = decode(mirrored, np.array([[0.25, 0.25]]), np.array([[0.0, 0.6, -0.8]]), np.array([[0.0, 0.0, 2.0]]))
    assert np.allclose(out, [[0.782806, 0.268941, 0.757872]], atol=1e-6)
    w1nv = np.concatenate([w1, np.zeros((2, 4), np.float32)], 1)  # the example's third part
    w1nv[0, 17], w1nv[1, 20] = 1.0, 2.0
    nv = replace(mat, view_encoding="sh2_reflected_nv", layers=[replace(mat.layers[0], weights=w1nv), mat.layers[1]])
    out = decode(nv, np.array([[0.25, 0.25]]), np.array([[0.0, 0.6, -0.8]]), np.array([[0.0, 0.0, 2.0]]))
    assert np.allclose(out, [[0.946954, 0.484123, 0.917532]], atol=1e-6)


def test_supersampled_render_covers_silhouette_pixels_in_part():
    """A quad whose left and right edges fall at x = 10.25 and 20.75 px: with 4 x 4 sub-pixels the
    edge columns are 3/4 covered (and 3/4 as bright over black), as in an anti-aliased photo; with
    one sample per pixel they are all or nothing."""
    from nrconvert.capture.model import Frame
    from nrconvert.export.reader import LodPrimitive

    x0, x1, y0, y1 = (10.25 - 16) / 100, (20.75 - 16) / 100, -0.08, 0.08  # z = -1: pixel = 100 x + 16
    quad = np.array([[x0, y0, -1], [x1, y0, -1], [x1, y1, -1], [x0, y1, -1]], np.float32)
    prim = LodPrimitive("quad", quad, np.zeros((4, 2), np.float32), np.array([[0, 1, 2], [0, 2, 3]]), 0,
                        np.full((2, 2, 3), 255, np.uint8), None)
    cam = Frame(None, np.eye(4), 100.0, 100.0, 16.0, 16.0, 32, 32)
    one, hit = render_primitive(prim, cam, "captured")
    aa, cover = render_primitive(prim, cam, "captured", samples=4)
    rows = slice(8, 24)
    assert hit.dtype == bool and hit[rows, 10].all() and hit[rows, 20].all() and not hit[rows, 21].any()
    assert np.allclose(cover[rows, 10], 0.75) and np.allclose(cover[rows, 20], 0.75)
    assert np.allclose(cover[rows, 11:20], 1.0) and cover[:, 21:].max() == 0 and cover[:8].max() == 0
    assert np.allclose(aa[rows, 10], 0.75) and np.allclose(aa[rows, 15], 1.0) and np.allclose(one[rows, 10], 1.0)
    assert abs(cover.sum() - 10.5 * 16) < 1e-3  # the quad's exact area in pixels
