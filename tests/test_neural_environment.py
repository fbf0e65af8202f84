"""NRC_neural_material 1.1: the learnt environment (reference decoder, trainable twin, JSON, GLB)."""
from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch

from nrconvert.bake.neural import Decoder, ViewSamples, distill, environment_size
from nrconvert.export.glb import write_glb
from nrconvert.export.neural import (EXTENSION, Layer, NeuralMaterial, NeuralMaterialError, decode, equirect_uv,
                                     from_json, sample_equirect, view_inputs)
from nrconvert.export.reader import GlbError, lod_primitives, read_glb
from tests.test_export_pbr import make_pbr_asset, validator_available  # noqa: F401


def env_decoder(size: int = 16, env_width: int = 32, seed: int = 0) -> Decoder:
    dec = Decoder(size, seed=seed, encoding="nv", env_width=env_width)
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed + 7)
        dec.features.copy_(torch.rand(dec.features.shape, generator=g))
        dec.env.copy_(torch.rand(dec.env.shape, generator=g))
        for p in dec.mlp.parameters():
            p.mul_(3.0)
    return dec


def env_material(size: int = 16, seed: int = 0) -> NeuralMaterial:
    return env_decoder(size, seed=seed).export(np.ones((size, size), bool))


def test_worked_example_with_an_environment():
    """docs/neural_material.md, the 1.1 worked example: the mirror's u lands on the seam (1.0)."""
    feats = np.zeros((2, 2, 8), np.uint8)
    feats[0, 0] = [255, 0, 128, 64, 0, 255, 32, 200]
    w1 = np.zeros((2, 9), np.float32)
    w1[0, 0], w1[0, 8], w1[1, 1] = 1.0, 1.0, 1.0
    w2 = np.array([[1, 0], [0, 0], [0, 0], [1, 0], [1, 0], [0.5, 0]], np.float32)
    env = np.zeros((2, 4, 3), np.uint8)
    env[0, 0], env[0, 3], env[1, 0], env[1, 3] = [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]
    mat = NeuralMaterial(feats, np.array([2, 2, 1, 1, 1, 1, 0.5, 0.5], np.float32),
                         np.array([-1, -1, 0, 0, 0, 0, -0.25, -0.25], np.float32),
                         [Layer(w1, np.array([0, 0.25], np.float32), "relu"),
                          Layer(w2, np.array([0, -1, 0, 0, 0, 0], np.float32), "linear")],
                         "nv", env, np.full(3, 2, np.float32), np.full(3, -0.5, np.float32))
    out = decode(mat, np.array([[0.25, 0.25]]), np.array([[0.0, 0.6, -0.8]]), np.array([[0.0, 0.0, 2.0]]))
    assert np.allclose(out, [[0.937027, 0.475021, 0.428641]], atol=1e-6)
    assert mat.flops_per_pixel() == 16 + 24 + 2 * 2 * 9 + 2 + 2 * 6 * 2 + 64


def test_equirect_projection_and_wrap():
    """-Z (glTF forward) is the centre column, +Y the top row; u wraps (REPEAT), v clamps."""
    dirs = np.array([[0, 0, -1], [1, 0, 0], [0, 1, 0], [0, -1, 0]], np.float64)
    uv = equirect_uv(dirs)
    assert np.allclose(uv[:2], [[0.5, 0.5], [0.75, 0.5]], atol=1e-12)
    assert np.allclose(uv[2:, 1], [0.0, 1.0], atol=1e-12)  # the poles (u is any there)
    tex = np.random.default_rng(0).integers(0, 256, (4, 8, 3), dtype=np.uint8)
    seam = sample_equirect(tex, np.array([[0.0, 0.5], [1.0, 0.5], [1 / 16, 0.375]]))
    assert np.allclose(seam[0], seam[1])  # both sides of the seam: halfway between the last and first column
    t = tex.astype(np.float64)
    assert np.allclose(seam[0], (t[1, 7] + t[1, 0] + t[2, 7] + t[2, 0]) / 4)
    assert np.allclose(seam[2], tex[1, 0])  # a texel centre reads that texel


def test_reference_decoder_matches_the_twin_and_the_environment_matters():
    dec = env_decoder()
    mat = dec.export(np.ones((16, 16), bool))
    rng = np.random.default_rng(2)
    uv, d, n = rng.uniform(0, 1, (800, 2)), rng.normal(size=(800, 3)), rng.normal(size=(800, 3))
    ref = decode(mat, uv, d, n)
    with torch.no_grad():
        twin = dec(torch.from_numpy(uv).float(), torch.from_numpy(view_inputs(d, "nv", n)).float()).double().numpy()
    assert ref.std() > 0.05 and np.abs(ref - twin).max() < 1e-5
    flipped = copy.deepcopy(mat)
    flipped.environment = flipped.environment[:, ::-1].copy()  # u the wrong way round
    assert np.abs(decode(flipped, uv, d, n) - ref).mean() > 0.02
    assert mat.flops_per_pixel() == 776 <= 1000


def test_distillation_learns_a_reflection_the_environment_holds():
    """A mirror-like surface of one colour per direction: with the environment the decoder fits it
    far better than SH2 of the mirror can (the reason the member exists)."""
    rng = np.random.default_rng(3)
    d, n = rng.normal(size=(20_000, 3)), rng.normal(size=(20_000, 3))
    view = view_inputs(d, "nv", n)
    u, v = equirect_uv(view[:, :3]).T
    rgb = 0.5 + 0.4 * np.stack([np.sin(6 * math.pi * u), np.cos(4 * math.pi * v), np.sin(2 * math.pi * (u + v))], 1)
    uv = rng.uniform(0, 1, (len(d), 2))
    samples = ViewSamples(uv.astype(np.float32), view.astype(np.float32), rgb.astype(np.float32))
    mse_env = distill(samples, 8, 300, batch=4096, encoding="nv", env_width=32).history[-1]["mse"]
    plain = ViewSamples(samples.uv, view_inputs(d, "sh2_reflected_nv", n).astype(np.float32), samples.rgb)
    mse_sh = distill(plain, 8, 300, batch=4096, encoding="sh2_reflected_nv").history[-1]["mse"]
    assert mse_env < 0.3 * mse_sh, (mse_env, mse_sh)


def test_pipeline_decoder_with_an_environment_is_one_wide_layer_and_lower_lods_share_it():
    """With an environment nrconvert writes 9 -> 28 -> 6 (972 FLOP, inside the 1000 budget); a
    lower LOD distilled against LOD0's decoder keeps its widths and weights, only its features
    are its own."""
    rng = np.random.default_rng(4)
    d, n = rng.normal(size=(4000, 3)), rng.normal(size=(4000, 3))
    samples = ViewSamples(rng.uniform(0, 1, (4000, 2)).astype(np.float32),
                          view_inputs(d, "nv", n).astype(np.float32), rng.uniform(0, 1, (4000, 3)).astype(np.float32))
    lod0 = distill(samples, 8, 20, batch=1024, encoding="nv", env_width=16)
    assert [layer.weights.shape for layer in lod0.material.layers] == [(28, 9), (6, 28)]
    assert lod0.material.flops_per_pixel() == 972 <= 1000
    lod1 = distill(samples, 4, 5, batch=1024, shared=lod0.decoder)
    for mine, theirs in zip(lod1.material.layers, lod0.material.layers):
        np.testing.assert_array_equal(mine.weights, theirs.weights)
    np.testing.assert_array_equal(lod1.material.environment, lod0.material.environment)
    assert lod1.material.features.shape[:2] == (4, 4)


def test_environment_resolution_follows_the_evidence():
    """24 samples per texel at least: the tiny 16-photo capture (10.6 k samples) gets 16 x 8, a
    200 px capture of 100 photos (~1 M) the full 128 x 64."""
    assert environment_size(10_622, 128) == 16
    assert environment_size(1_000_000, 128) == 128 and environment_size(1_000_000, 64) == 64
    assert environment_size(10, 128) == 8 and environment_size(10_000, 0) == 0


def test_lower_lods_share_the_environment():
    samples = ViewSamples(np.random.default_rng(4).uniform(0, 1, (500, 2)).astype(np.float32),
                          view_inputs(np.ones((500, 3)), "nv", np.ones((500, 3))).astype(np.float32),
                          np.full((500, 3), 0.5, np.float32))
    lod0 = distill(samples, 8, 5, encoding="nv", env_width=16)
    lod1 = distill(samples, 4, 5, shared=lod0.decoder)
    assert lod1.material.view_encoding == "nv"
    assert np.array_equal(lod1.material.environment, lod0.material.environment)


@pytest.mark.parametrize("breakage, message", [
    (lambda e: e["layers"][-1].__setitem__("activation", "sigmoid"), "linear"),
    (lambda e: e["layers"][-1].update(bias=[0.0] * 3, weights=[0.0] * 36), "6 outputs"),
    (lambda e: e.update(viewEncoding="sh2") or e["layers"][0].__setitem__("weights", [0.0] * 12 * 17), "mirrored"),
    (lambda e: e["environment"].__setitem__("scale", [1.0, 1.0]), "environment.scale"),
    (lambda e: e["environment"].__setitem__("offset", [0.0, float("inf"), 0.0]), "finite"),
    (lambda e: e["environment"].__setitem__("texture", {"index": -1}), "texture index"),
    (lambda e: e["environment"].__setitem__("texture", {}), "environment.texture.index"),
    (lambda e: e.__setitem__("environment", [1, 2]), "JSON object"),
])
def test_malformed_environment_is_a_clear_error(breakage, message):
    mat = env_material()
    ext = copy.deepcopy(mat.to_json((0, 1), 2))
    breakage(ext)
    with pytest.raises(NeuralMaterialError, match=message):
        from_json(ext, mat.textures(), mat.environment)


def test_environment_image_must_be_there_and_rgb():
    mat = env_material()
    ext = mat.to_json((0, 1), 2)
    for bad in (None, mat.environment[..., :2], mat.environment[:1]):
        with pytest.raises(NeuralMaterialError, match="environment texture"):
            from_json(ext, mat.textures(), bad)
    with pytest.raises(ValueError, match="texture index"):
        mat.to_json((0, 1))


@pytest.fixture(scope="module")
def env_glb(tmp_path_factory):
    asset = make_pbr_asset()
    lod0 = env_decoder(32)
    for k, lod in enumerate(asset.lods):
        shared = distill(ViewSamples(np.zeros((4, 2), np.float32), np.zeros((4, 4), np.float32),
                                     np.zeros((4, 3), np.float32)), 32 >> k, 0, shared=lod0)
        lod.maps.neural = shared.material
    path = tmp_path_factory.mktemp("neural_env") / "env.glb"
    write_glb(asset, path, version="test")
    return asset, path


def test_glb_round_trip_with_one_shared_environment(env_glb):
    asset, path = env_glb
    glb = read_glb(path)
    doc = glb.doc
    prims = lod_primitives(glb)
    env_ids = {doc["materials"][p.captured_material]["extensions"][EXTENSION]["environment"]["texture"]["index"]
               for p in prims}
    assert len(prims) == len(asset.lods) >= 2 and len(env_ids) == 1  # embedded once for the whole chain
    sampler = doc["samplers"][doc["textures"][env_ids.pop()]["sampler"]]
    assert (sampler["minFilter"], sampler["wrapS"], sampler["wrapT"]) == (9729, 10497, 33071)
    rng = np.random.default_rng(5)
    uv, d, n = rng.uniform(0, 1, (300, 2)), rng.normal(size=(300, 3)), rng.normal(size=(300, 3))
    for lod, prim in zip(asset.lods, prims):
        assert np.array_equal(prim.neural.environment, lod.maps.neural.environment)
        assert np.allclose(decode(prim.neural, uv, d, n), decode(lod.maps.neural, uv, d, n), atol=1e-6)


def test_glb_with_environment_validates(env_glb, validator_available):  # noqa: F811
    from nrconvert.export.validate import assert_valid

    report = assert_valid(env_glb[1])
    assert report.errors == 0, report.format()


def test_reader_names_a_missing_environment_texture(env_glb, tmp_path):
    from nrconvert.export.reader import Glb

    glb = read_glb(env_glb[1])
    doc = json.loads(json.dumps(glb.doc))
    for mat in doc["materials"]:
        ext = (mat.get("extensions") or {}).get(EXTENSION)
        if ext:
            ext["environment"]["texture"]["index"] = 999
    with pytest.raises(GlbError, match="textures"):
        lod_primitives(Glb(doc, glb.bin))
