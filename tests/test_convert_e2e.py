"""synth → convert → GLB on a tiny capture, checked by real readers."""
from __future__ import annotations

import io
import json

import numpy as np
import pygltflib
import pytest
from PIL import Image

from nrconvert.export.validate import validate_glb

from .conftest import run_cli

pytestmark = pytest.mark.slow


def test_glb_is_valid(tiny_conversion):
    glb, _ = tiny_conversion
    report = validate_glb(glb)
    assert report.errors == 0, report.format()


def _png(g: pygltflib.GLTF2, texture_index: int) -> np.ndarray:
    view = g.bufferViews[g.images[g.textures[texture_index].source].bufferView]
    return np.asarray(Image.open(io.BytesIO(g.binary_blob()[view.byteOffset:view.byteOffset + view.byteLength])))


def test_glb_has_textured_mesh_in_capture_frame(tiny_conversion, tiny_capture):
    glb, _ = tiny_conversion
    g = pygltflib.GLTF2().load(str(glb))
    prim = g.meshes[0].primitives[0]
    assert prim.attributes.TEXCOORD_0 is not None and prim.attributes.TANGENT is not None
    pos = g.accessors[prim.attributes.POSITION]
    # the synth object sits inside [-1, 1]^3 around the origin; Y-up export keeps it there
    assert np.all(np.abs(pos.min) < 1.2) and np.all(np.abs(pos.max) < 1.2)
    # default material: relightable PBR with every map
    mat = g.materials[prim.material]
    pbr = mat.pbrMetallicRoughness
    assert "KHR_materials_unlit" not in mat.extensions
    assert mat.normalTexture and mat.occlusionTexture and pbr.metallicRoughnessTexture
    albedo = _png(g, pbr.baseColorTexture.index)
    assert albedo.shape[0] == albedo.shape[1] == 256  # tiny preset: 256 for LOD0
    assert albedo.reshape(-1, albedo.shape[-1]).std(0).mean() > 10, "albedo is flat: nothing was baked"
    normal = _png(g, mat.normalTexture.index).astype(float) / 127.5 - 1
    assert np.median(normal[..., 2]) > 0.9, "tangent-space normals should mostly face out"
    # the captured look: an unlit variant with the photo-lit texture
    variants = [v["name"] for v in g.extensions["KHR_materials_variants"]["variants"]]
    assert variants == ["captured"]
    mapping = prim.extensions["KHR_materials_variants"]["mappings"][0]
    captured = g.materials[mapping["material"]]
    assert "KHR_materials_unlit" in captured.extensions
    tex = _png(g, captured.pbrMetallicRoughness.baseColorTexture.index)
    assert tex.reshape(-1, tex.shape[-1]).std(0).mean() > 10, "texture is flat: nothing was baked"
    # LOD chain (tiny preset: 2 levels) and the light beside the GLB
    lod0 = g.nodes[g.scenes[0].nodes[0]]
    assert lod0.name.endswith("_LOD0") and len(lod0.extensions["MSFT_lod"]["ids"]) == 1
    extras = g.asset.extras["nrconvert"]
    assert extras["up_axis"] == "z" and "psnr_object" in extras["metrics"]
    assert (glb.parent / extras["environment"]["uri"]).exists()
    assert np.asarray(extras["environment"]["sh9"]).shape == (9, 3)


def test_report_and_metrics(tiny_conversion):
    glb, _ = tiny_conversion
    report = glb.with_suffix(".report")
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["triangles"] > 500
    assert metrics["heldout"]["views"] == 4
    # a 64 px capture trained for seconds (measured 16.8 dB, Chamfer 0.5 %, F 0.88): far from the
    # benchmark, but only a faithful mesh with the right texture gets there
    assert metrics["heldout"]["psnr_object"] > 14.0
    assert metrics["geometry"]["chamfer_ratio_of_bbox_diagonal"] < 0.015
    assert metrics["geometry"]["fscore"] > 0.7
    assert metrics["largest_component_share"] > 0.9
    assert (report / "heldout.png").exists() and (report / "index.html").exists()


def test_json_progress_lines(tiny_conversion):
    _, res = tiny_conversion
    events = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    stages = {e["stage"] for e in events if e.get("event") == "end"}
    assert {"train", "extract", "bake", "neural", "export"} <= stages
    assert events[-1]["event"] == "done"


def test_neural_material_in_the_pipeline_glb(tiny_conversion, tiny_capture, tmp_path):
    """Every LOD's captured material carries a decodable neural material that looks like the
    photos (held-out view, reference renderer), no worse than the unlit texture beside it."""
    from nrconvert.capture.images import load_frame_image
    from nrconvert.capture.transforms import load_cameras
    from nrconvert.export.reader import lod_primitives, read_glb
    from nrconvert.metrics.image import psnr
    from nrconvert.render.asset_view import render_primitive, to_asset_frame

    glb, _ = tiny_conversion
    doc = read_glb(glb)
    assert "NRC_neural_material" in doc.doc["extensionsUsed"]
    assert "NRC_neural_material" not in doc.doc.get("extensionsRequired", [])
    prims = lod_primitives(doc)
    assert len(prims) == 2 and all(p.neural is not None for p in prims)
    frame = load_cameras(tiny_capture / "transforms_test.json")[0]
    rgb, alpha = load_frame_image(frame)
    obj = alpha >= 0.5
    scores = {}
    for look in ("neural", "captured"):
        img, hit = render_primitive(prims[0], to_asset_frame(frame, "z"), look)
        scores[look] = psnr(img[obj], (rgb * alpha[..., None])[obj])
    # measured (tiny capture, 64 px, 16 photos): neural 20.14 dB, captured 20.28 dB; too few photos
    # for view dependence to pay, the bar is that the material decodes to the photo look
    assert scores["neural"] > 15.0 and scores["neural"] > scores["captured"] - 0.5, scores
    out = tmp_path / "view.png"
    res = run_cli("render", str(glb), "--camera", str(tiny_capture / "transforms_test.json"), "-o", str(out))
    assert res.returncode == 0 and out.exists(), res.stderr


def test_resume_reuses_stages(tiny_conversion, tiny_capture, tmp_path):
    glb, _ = tiny_conversion
    work = glb.with_suffix(".work")
    out = tmp_path / "again.glb"
    res = run_cli(str(tiny_capture), "-o", str(out), "--preset", "tiny", "--workdir", str(work), "--resume",
                  "--redo", "export", "--progress", "json")
    assert res.returncode == 0, res.stderr
    done = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")][-1]
    assert done["timings"]["train"] < 10, "training ran again instead of loading field.pt"
    assert validate_glb(out).errors == 0


def test_equirect_light_end_to_end(tiny_conversion, tiny_capture, tmp_path):
    """`--set pbr_light=map` (the equirect light instead of spherical Gaussians) through a real
    re-bake of the tiny field: a valid GLB whose environment entry names the .hdr beside it, an
    image with light in it and SH9 from that image."""
    from nrconvert.export.hdr import read_hdr

    import shutil

    glb, _ = tiny_conversion
    out = tmp_path / "map.glb"
    work = shutil.copytree(glb.with_suffix(".work"), tmp_path / "map.work")  # the fixture's stays as it was
    res = run_cli(str(tiny_capture), "-o", str(out), "--preset", "tiny", "--workdir", str(work),
                  "--resume", "--redo", "bake", "--set", "pbr_light=map", "--set", "neural=false", "--progress", "json")
    assert res.returncode == 0, res.stderr[-3000:]
    assert validate_glb(out).errors == 0
    env = pygltflib.GLTF2().load(str(out)).asset.extras["nrconvert"]["environment"]
    assert env["uri"] == "map.hdr" and env["projection"] == "equirectangular"
    img = read_hdr(out.with_suffix(".hdr"))
    assert img.shape == (env["height"], env["width"], 3) and np.isfinite(img).all()
    assert img.max() > 0.05 and img.std() > 0.01  # a light, not a black or flat map
    sh9 = np.asarray(env["sh9"])
    assert sh9.shape == (9, 3) and sh9[0].min() > 0  # the DC term: positive light in every channel


def test_missing_capture_exit_code(tmp_path):
    res = run_cli(str(tmp_path / "nope"), "-o", str(tmp_path / "x.glb"))
    assert res.returncode == 3
    assert "nope" in res.stderr
    assert not (tmp_path / "x.glb").exists()


def test_unwritable_output_exit_code(tiny_capture, tmp_path):
    res = run_cli(str(tiny_capture), "-o", str(tmp_path / "missing_dir" / "x.glb"), "--preset", "tiny")
    assert res.returncode == 6
    assert "missing_dir" in res.stderr


def test_bad_setting_exit_code(tiny_capture, tmp_path):
    res = run_cli(str(tiny_capture), "-o", str(tmp_path / "x.glb"), "--set", "no_such_knob=1")
    assert res.returncode == 2
    assert "no_such_knob" in res.stderr


@pytest.mark.parametrize("args, words", [(["--texture-size", "1000"], "power of two"),
                                         (["--lods", "0"], "--lods must be at least 1")])
def test_bad_bake_options_exit_code(tiny_capture, tmp_path, args, words):
    res = run_cli(str(tiny_capture), "-o", str(tmp_path / "x.glb"), "--preset", "tiny", *args)
    assert res.returncode == 2
    assert words in res.stderr
    assert not (tmp_path / "x.glb").exists()
