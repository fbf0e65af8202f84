"""NRC_neural_material in three.js: the web decoder (converter/export/web/neural_material.js, a
ShaderMaterial built from the extension's JSON) against the reference decoder, in headless Chromium.

tools/web/neural.html loads a GLB through GLTFLoader with the module's plugin, shows LOD0's
`captured` variant (where nrconvert puts the extension) and renders it from cameras the test hands
it; `render.asset_view.render_primitive` renders the same cameras with `export.neural.decode`. The
spec (docs/neural_material.md, Conformance) asks for >= 35 dB PSNR where both renders cover the
object. Reuses tests/test_threejs.py's Chromium set-up and skips, saying why, when Chromium,
playwright or three.js are missing. One material per view encoding, and one `nv` material with an
environment (version 1.1) whose random content dominates the colour, seen where the mirrored
view crosses the environment's u seam.
"""
from __future__ import annotations

import base64
import copy
import functools
import json
import re
import struct
import threading
from dataclasses import replace
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pytest
import torch
from nrconvert.bake.neural import Decoder, default_hidden
from nrconvert.capture.model import Frame
from nrconvert.export.glb import write_glb
from nrconvert.export import neural as neural_format
from nrconvert.export.neural import (
    EXTENSION,
    NeuralMaterial,
    NeuralMaterialError,
    equirect_uv,
    from_json,
    sample_bilinear,
    view_inputs,
)
from nrconvert.export.reader import lod_primitives, read_glb
from nrconvert.render.asset_view import render_primitive, to_asset_frame
from nrconvert.render.raster import rasterize_view

from tests.test_threejs import CHROMIUM_ARGS, REPO, TIMEOUT_MS, WEB, _chromium, _Handler

pytestmark = pytest.mark.timeout(300)
PSNR_MIN = 35.0  # docs/neural_material.md, Conformance (web)
FEATURE_SIZE, CYCLES = 128, 8.0  # LOD0's features; sinusoids of up to 8 cycles over the atlas
ERODE = 2  # px: silhouette pixels are where the two rasterizers may disagree
# Moves the whole asset (and the camera with it) in the page: rotation, translation, uniform
# scale. The image must not change, and the neural look only stays put if the shader takes the
# view direction in the node's local frame, as the spec says.
_ANGLE = np.deg2rad(40.0)
MOVE = np.array([[np.cos(_ANGLE), 0.0, np.sin(_ANGLE), 0.3], [0.0, 1.0, 0.0, -0.2],
                 [-np.sin(_ANGLE), 0.0, np.cos(_ANGLE), 0.5], [0.0, 0.0, 0.0, 1.0]])
MOVE[:3, :3] *= 1.6
# The environment case: 16 x 8 texels of random bytes dequantised over [-3, 3], so that
# sigmoid(a + b * e) follows the environment more than the features, and a wrong lookup
# (mirrored, rolled, flipped or clamped at the seam) changes the colour by far
ENV_WIDTH, ENV_SCALE = 16, 6.0
ENCODINGS = ["sh2", "sh2_reflected", "sh2_reflected_nv", "nv+environment"]


def smooth_material(size: int, seed: int = 0, cycles: float = 1.5, encoding: str = "sh2",
                    env_width: int = 0) -> NeuralMaterial:
    """Features that vary smoothly over the atlas (sinusoids with periods of >= size / cycles / 1.4
    texels: the GPU's 8-bit filtering and its perspective-correct interpolation, where the
    reference rasterizer interpolates linearly in screen space, barely show) but span their range;
    an MLP scaled like tests/test_neural_format.py's random decoder, its view inputs more so, so
    the colour changes strongly with position and with the view direction. With `env_width`, an
    environment of random bytes (ENV_SCALE wide), texel to texel as different as it gets. The MLP
    has the widths the pipeline writes (`default_hidden`: one layer of 28 with an environment)."""
    dec = Decoder(size, default_hidden(env_width), seed=seed, encoding=encoding, env_width=env_width)
    g = torch.Generator().manual_seed(seed + 1)
    v, u = torch.meshgrid((torch.arange(size) + 0.5) / size, (torch.arange(size) + 0.5) / size, indexing="ij")
    with torch.no_grad():
        freq = (torch.rand(8, 2, generator=g) * 2 - 1) * cycles
        phase = torch.rand(8, generator=g) * 2 * np.pi
        waves = torch.sin(2 * np.pi * (freq[:, :1, None] * u + freq[:, 1:, None] * v) + phase[:, None, None])
        dec.features.copy_(0.5 + 0.45 * waves[None])
        dec.scale.copy_(torch.rand(8, generator=g) * 4 - 2)
        dec.offset.copy_(torch.rand(8, generator=g) - 0.5)
        for p in dec.mlp.parameters():
            p.mul_(3.0)
        dec.mlp[0].weight[:, 8:] *= 2.0  # the SH inputs
        if env_width:
            dec.env.copy_(torch.rand(dec.env.shape, generator=g))
            dec.env_scale.fill_(ENV_SCALE)
            dec.env_offset.fill_(-ENV_SCALE / 2)
    return dec.export(np.ones((size, size), bool))


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """OpenGL camera-to-world (looks down -Z, +Y up) at `eye` looking at `target`."""
    back = (eye - target) / np.linalg.norm(eye - target)
    right = np.cross(up, back)
    right /= np.linalg.norm(right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, np.cross(back, right), back, eye
    return c2w


def page_camera(frame: Frame) -> dict:
    """neural.js's camera: intrinsics plus c2w in the glTF frame (row-major)."""
    return {"fx": frame.fx, "fy": frame.fy, "cx": frame.cx, "cy": frame.cy, "width": frame.width,
            "height": frame.height, "c2w": frame.c2w.tolist()}


def erode(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(r):
        p = np.pad(out, 1)
        out = out & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return out


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    mse = float(np.mean((a[mask] - b[mask]) ** 2))
    return 10 * np.log10(1.0 / max(mse, 1e-12))


def mirrored_u(prim, frame: Frame) -> np.ndarray:
    """(H, W) environment u the reference decoder looks up per covered pixel (NaN elsewhere)."""
    frags = rasterize_view(frame, prim.positions, prim.faces)
    hit = frags.tri >= 0
    tri, b = prim.faces[frags.tri[hit]], frags.bary[hit][..., None]
    pos, normals = (prim.positions[tri] * b).sum(1), (prim.normals[tri] * b).sum(1)
    u = np.full(hit.shape, np.nan)
    u[hit] = equirect_uv(view_inputs(pos - frame.c2w[:3, 3], "nv", normals)[:, :3])[:, 0]
    return u


def rewrite_glb_json(src: Path, dst: Path, edit) -> None:
    """Copy of a GLB with `edit(doc)` applied to its JSON chunk (the BIN chunk kept as is)."""
    data = src.read_bytes()
    n = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(data[20:20 + n])
    edit(doc)
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    rest = data[20 + n:]
    dst.write_bytes(struct.pack("<4sII", b"glTF", 2, 12 + 8 + len(text) + len(rest))
                    + struct.pack("<I4s", len(text), b"JSON") + text + rest)


def _broken(path: str, value):
    """A function that sets ext[path...] = value on the extension JSON and returns it."""
    def apply(ext: dict) -> dict:
        *parents, key = path
        target = ext
        for k in parents:
            target = target[k]
        target[key] = value(target[key]) if callable(value) else value
        return ext
    return apply


# The spec's malformations (as in tests/test_neural_format.py) and what the message must name
BREAKAGES = [
    (_broken(("layers", 0, "weights"), lambda w: w[:-1]), "layers[0].weights"),
    (_broken(("layers", 1, "activation"), "tanh"), "activation"),
    (_broken(("featureScale",), [1.0] * 7), "featureScale"),
    (_broken(("featureOffset",), ["a"] * 8), "featureOffset"),
    (_broken(("viewEncoding",), "sh9"), "viewEncoding"),
    (_broken(("layers", 0, "bias"), lambda b: [float("nan")] * len(b)), "finite"),
    (_broken(("layers",), []), "layers"),
    (_broken(("featureTextures",), [{"index": 0}]), "featureTextures"),
]


def _without_environment(ext: dict) -> dict:
    del ext["environment"]
    return ext


def _sh2_with_environment(ext: dict) -> dict:
    """viewEncoding sh2 (not mirrored) with the first layer widened to its 17 inputs, so that only
    the environment's requirement is broken."""
    first = ext["layers"][0]
    n_out = len(first["bias"])
    rows = np.asarray(first["weights"]).reshape(n_out, -1)
    first["weights"] = np.pad(rows, ((0, 0), (0, 17 - rows.shape[1]))).ravel().tolist()
    ext["viewEncoding"] = "sh2"
    return ext


def _last_layer_rgb(ext: dict) -> dict:
    last = ext["layers"][-1]
    last["weights"] = last["weights"][:len(last["weights"]) // 2]
    last["bias"] = last["bias"][:3]
    return ext


# The environment's malformations (docs/neural_material.md, Environment: Requirements)
ENV_BREAKAGES = [
    (_broken(("environment", "scale"), [1.0, 1.0]), "environment.scale"),
    (_broken(("environment", "offset"), [0.0, "a", 0.0]), "environment.offset"),
    (_broken(("environment", "texture", "index"), -1), "environment.texture.index"),
    (_broken(("environment", "texture"), {}), "environment.texture.index"),
    (_broken(("environment",), [1, 2, 3]), "environment must be a JSON object"),
    (_broken(("layers", -1, "activation"), "sigmoid"), "must be linear"),
    (_last_layer_rgb, "6 outputs"),
    (_without_environment, "3 outputs"),  # a and b without an environment to weigh
    (_sh2_with_environment, "mirrored view"),
]
PARSE_JS = """async (cases) => {
  const m = await import('/converter/export/web/neural_material.js');
  return cases.map((ext) => { try { m.parseNeuralExtension(ext); return null; } catch (e) { return e.message; } });
}"""


def _driver_notice(text: str) -> bool:
    """Chromium's own performance notices about SwiftShader (e.g. "GPU stall due to ReadPixels")."""
    return "GL Driver Message" in text or "GPU stall" in text


def _pixels(view: dict) -> np.ndarray:
    rgba = np.frombuffer(base64.b64decode(view["rgba"]), np.uint8)
    return rgba.reshape(view["height"], view["width"], 4)


def _open(page, url: str) -> dict:
    page.goto(url, timeout=TIMEOUT_MS)
    page.wait_for_function("window.__result !== undefined", timeout=TIMEOUT_MS)
    return page.evaluate("window.__result")


def _render(page, frame: Frame, transform: np.ndarray | None = None, tone_mapped: bool = False) -> dict:
    return page.evaluate("([c, t, m]) => renderView(c, t, m)",
                         [page_camera(frame), None if transform is None else transform.tolist(), tone_mapped])


def _break_lod0(edit):
    """A rewrite_glb_json edit applying `edit` to LOD0's extension."""
    def apply(doc):
        for mat in doc["materials"]:
            if EXTENSION in mat.get("extensions", {}) and mat["name"].endswith("_LOD0"):
                edit(doc, mat["extensions"][EXTENSION])
    return apply


def _drop_weight(doc, ext):  # layer 0 one weight short: the spec's first malformation
    ext["layers"][0]["weights"].pop()


def _no_environment_texture(doc, ext):  # well-formed JSON naming a texture the file lacks
    ext["environment"]["texture"]["index"] = len(doc["textures"])


@pytest.fixture(scope="module", params=ENCODINGS)
def web(request, tmp_path_factory):
    """The page's renders of the good GLB (several cameras) and of one with a malformed extension,
    each page's console warnings/errors and page errors, and the reference renders; once per view
    encoding (sh2_reflected mirrors the view about the NORMAL in the shader; sh2_reflected_nv also
    reads n.v and the normal; nv+environment reads n.v and looks the mirror up in an
    environment)."""
    executable = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install playwright)")
    if not (WEB / "node_modules" / "three" / "build" / "three.module.js").is_file():
        pytest.skip("three.js is not installed: cd tools/web && npm ci")
    from tests.test_export_pbr import CENTER, make_pbr_asset

    asset = make_pbr_asset(with_light=False)
    encoding, _, env = request.param.partition("+")
    env_width = ENV_WIDTH if env else 0
    for k, lod in enumerate(asset.lods):
        lod.maps.neural = smooth_material(FEATURE_SIZE >> k, seed=k, cycles=CYCLES, encoding=encoding,
                                          env_width=env_width)
    asset_dir = tmp_path_factory.mktemp("neural_web")
    write_glb(asset, asset_dir / "neural.glb", version="0.1.0-web-neural-test")
    # with an environment, one the JSON checks cannot catch: the plugin finds out loading it
    breakage = (_no_environment_texture, "has no image") if env else (_drop_weight, "layers[0].weights")
    rewrite_glb_json(asset_dir / "neural.glb", asset_dir / "broken.glb", _break_lod0(breakage[0]))

    up = np.array([0.0, 0.0, 1.0])  # capture frame, Z up
    oblique = Frame(Path("oblique.png"), look_at(CENTER + [1.4, -1.5, 1.1], CENTER, up),
                    fx=104.0, fy=92.0, cx=70.5, cy=41.0, width=120, height=88)  # off-centre, fx != fy
    far = Frame(Path("far.png"), look_at(CENTER + [-2.0, -4.5, 1.5], CENTER, up),
                fx=100.0, fy=100.0, cx=48.0, cy=36.0, width=96, height=72)  # features minified
    frames = {name: to_asset_frame(f, asset.up_axis)
              for name, f in (("capture", asset.cameras[0]), ("oblique", oblique), ("far", far))}
    ext = asset.lods[0].maps.neural.to_json((0, 1), 2 if env else None)
    last = len(ext["layers"]) - 1  # a bias one short of the last layer's outputs: its weights then do not fit
    breakages = (BREAKAGES + [(_broken(("layers", last, "bias"), [0.0, 0.0]), f"layers[{last}].weights")]
                 + (ENV_BREAKAGES if env else []))

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, asset_dir=asset_dir, root=REPO))  # the page imports ../../converter/export/web/
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/tools/web/neural.html"
    out = {"asset": asset, "frames": frames, "breakages": breakages, "broken_message": breakage[1]}
    try:
        with sync_api.sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                str(tmp_path_factory.mktemp("chromium_profile")), executable_path=executable, headless=True,
                args=CHROMIUM_ARGS, timeout=TIMEOUT_MS)
            try:
                for name in ("good", "broken"):
                    page = context.new_page()
                    page.set_default_timeout(TIMEOUT_MS)
                    log: list[str] = []
                    page.on("console", lambda m, log=log: log.append(f"{m.type}: {m.text}")
                            if m.type in ("warning", "error") and not _driver_notice(m.text) else None)
                    page.on("pageerror", lambda e, log=log: log.append(f"pageerror: {e}"))
                    page.on("requestfailed", lambda r, log=log: log.append(f"request failed: {r.url}"))
                    query = urlencode({"glb": f"/asset/{'neural' if name == 'good' else 'broken'}.glb",
                                       "camera": json.dumps(page_camera(frames["capture"]))})
                    result = _open(page, f"{url}?{query}")
                    if "error" not in result and name == "good":
                        views = {k: _render(page, f) for k, f in frames.items()}
                        # the asset and camera moved together: the same image
                        views["moved"] = _render(page, frames["capture"], MOVE)
                        views["tone_mapped"] = _render(page, frames["capture"], tone_mapped=True)
                        result["views"] = views
                        result["parse_errors"] = page.evaluate(PARSE_JS, [b(copy.deepcopy(ext)) for b, _ in breakages])
                    elif "error" not in result:
                        result["views"] = {"capture": result.pop("view")}
                    out[name] = (result, log)
                    page.close()
            finally:
                context.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)
    prim = lod_primitives(read_glb(asset_dir / "neural.glb"))[0]
    out["prim"] = prim
    out["reference"] = {k: render_primitive(prim, f, "neural") for k, f in frames.items()}
    out["reference"]["moved"] = out["reference"]["tone_mapped"] = out["reference"]["capture"]
    return out


def _compare(view: dict, ref: tuple[np.ndarray, np.ndarray]) -> tuple[float, np.ndarray, np.ndarray]:
    px = _pixels(view)
    img, hit = ref
    covered = px[..., 3] > 127
    both = erode(covered, ERODE) & erode(hit, ERODE)
    return psnr(px[..., :3] / 255.0, img, both), px, both


def test_page_uses_the_neural_shader_without_errors(web):
    result, log = web["good"]
    assert "error" not in result, result.get("error")
    assert log == []  # not even a warning: the extension is well formed
    assert result["lod"].endswith("_LOD0") and "WebGL 2" in result["renderer"]
    assert result["variants"] == ["captured"]
    assert result["material"]["type"] == "ShaderMaterial" and result["material"]["neural"]
    assert result["material"]["widths"] == [layer.weights.shape[0] for layer in web["prim"].neural.layers]
    # features are data: bilinear without mipmaps (three's LinearFilter 1006), clamp to edge (1001),
    # no colour space, not flipped. Settings, because smooth features hide mipmapping in the images.
    size = [FEATURE_SIZE, FEATURE_SIZE]
    assert result["material"]["features"] == 2 * [{"minFilter": 1006, "magFilter": 1006, "mipmaps": False,
                                                   "wrap": [1001, 1001], "colorSpace": "", "flipY": False,
                                                   "size": size}]
    # the environment: the same, but repeating in u (RepeatWrapping 1000) round the azimuth
    env = web["prim"].neural.environment
    assert result["material"]["environment"] == (None if env is None else {
        "minFilter": 1006, "magFilter": 1006, "mipmaps": False, "wrap": [1000, 1001], "colorSpace": "",
        "flipY": False, "size": [env.shape[1], env.shape[0]]})


@pytest.mark.parametrize("view", ["capture", "oblique", "far", "moved", "tone_mapped"])
def test_threejs_matches_the_reference_decoder(web, view):
    result, _ = web["good"]
    value, px, both = _compare(result["views"][view], web["reference"][view])
    img, hit = web["reference"][view]
    covered = px[..., 3] > 127
    # same silhouette up to edge pixels: a wrong camera (fov, aspect, principal point) shifts it
    assert (covered ^ hit).sum() <= 0.08 * hit.sum(), ((covered ^ hit).sum(), hit.sum())
    assert both.sum() > 300  # enough pixels for the PSNR to mean something
    assert img[both].std(0).max() > 0.12 and px[both][:, :3].std(0).max() > 30  # not flat: a real test
    print(f"{view}: PSNR three.js vs reference = {value:.2f} dB over {both.sum()} px")
    assert value >= PSNR_MIN, value


def _wrong_environments(mat: NeuralMaterial) -> dict[str, NeuralMaterial]:
    """The material as a shader that gets the environment wrong would decode it."""
    env = mat.environment
    return {name: replace(mat, environment=np.ascontiguousarray(e)) for name, e in (
        ("ignored", np.full_like(env, 128)),  # e constant: only a and b left
        ("u mirrored", env[:, ::-1]),  # atan(-m.x, -m.z)
        ("u rolled half", np.roll(env, env.shape[1] // 2, 1)),  # atan(m.x, m.z): -Z not the centre
        ("v flipped", env[::-1]),  # flipY, or the poles swapped
    )}


def test_the_comparison_would_catch_a_wrong_decoder(web):
    """The material's look depends enough on the view and on the weight layout that decoding with
    the SH signs flipped (d -> -d on the odd terms), the weights read [in][out], (sh2_reflected)
    the view not mirrored or (sh2_reflected_nv, nv) the normal reversed (the same mirror, other
    n.v and n) misses the bar by far, and so does (environment) ignoring the environment or
    looking it up mirrored, rotated or upside down; so passing above means the shader got them
    right."""
    result, _ = web["good"]
    prim, frame = web["prim"], web["frames"]["oblique"]
    mat = prim.neural
    first = mat.layers[0]
    flipped_w = first.weights.copy()
    flipped_w[:, 9:12] *= -1  # SH degree 1: -y, z, -x
    transposed_w = first.weights.ravel().reshape(first.weights.shape[::-1]).T.copy()
    weights = {"transposed": transposed_w} if mat.view_encoding == "nv" else {"SH flipped": flipped_w,
                                                                             "transposed": transposed_w}
    wrongs = {k: replace(prim, neural=replace(mat, layers=[replace(first, weights=w), *mat.layers[1:]]))
              for k, w in weights.items()}
    if mat.view_encoding == "sh2_reflected":  # and a shader that forgot the mirror
        wrongs["not mirrored"] = replace(prim, neural=replace(mat, view_encoding="sh2"))
    if mat.view_encoding in ("sh2_reflected_nv", "nv"):  # or read n.v and n the wrong way round
        wrongs["normal reversed"] = replace(prim, normals=-prim.normals)
    if mat.environment is not None:
        wrongs.update({k: replace(prim, neural=m) for k, m in _wrong_environments(mat).items()})
    for name, wrong_prim in wrongs.items():
        wrong = render_primitive(wrong_prim, frame, "neural")
        value, _, _ = _compare(result["views"]["oblique"], wrong)
        print(f"{name}: PSNR three.js vs wrong decoder = {value:.2f} dB")
        assert value < PSNR_MIN - 8, (name, value)


def test_environment_wraps_at_the_u_seam(web, monkeypatch):
    """The capture camera looks along -Z, so the surface facing it mirrors the view back to +Z:
    u = 1 = 0, the environment's seam, where a lookup blends its last and first columns (REPEAT).
    On those pixels three.js matches the reference, and a decoder that clamps u there (as it
    does v) does not."""
    if web["prim"].neural.environment is None:
        pytest.skip("no environment in this material")
    result, _ = web["good"]
    prim, frame = web["prim"], web["frames"]["capture"]
    width = prim.neural.environment.shape[1]
    _, px, both = _compare(result["views"]["capture"], web["reference"]["capture"])
    x = mirrored_u(prim, frame) * width - 0.5
    seam = both & ((x < 0) | (x > width - 1))  # NaN (not covered) compares false
    assert seam.sum() > 40 and (x[seam] < 0).any() and (x[seam] > width - 1).any(), seam.sum()
    img = web["reference"]["capture"][0]
    value = psnr(px[..., :3] / 255.0, img, seam)
    monkeypatch.setattr(neural_format, "sample_equirect", sample_bilinear)  # clamps in u too
    clamped, _ = render_primitive(prim, frame, "neural")
    wrong = psnr(px[..., :3] / 255.0, clamped, seam)
    print(f"u seam ({seam.sum()} px): PSNR three.js vs reference = {value:.2f} dB, vs clamped in u = {wrong:.2f} dB")
    assert value >= PSNR_MIN, value
    assert wrong < PSNR_MIN - 8, wrong


def test_js_parser_refuses_what_the_reference_refuses(web):
    messages = web["good"][0]["parse_errors"]
    breakages = web["breakages"]
    assert len(messages) == len(breakages)
    mat = web["asset"].lods[0].maps.neural
    ext = mat.to_json((0, 1), None if mat.environment is None else 2)
    from_json(copy.deepcopy(ext), mat.textures(), mat.environment)  # unbroken, it parses
    for (breakage, field), message in zip(breakages, messages):
        assert message is not None and field in message, (field, message)
        if field != "featureTextures":  # from_json takes the images, not their references
            with pytest.raises(NeuralMaterialError, match=re.escape(field)):
                from_json(breakage(copy.deepcopy(ext)), mat.textures(), mat.environment)


def test_malformed_extension_warns_and_shows_the_fallback(web):
    result, log = web["broken"]
    assert "error" not in result, result.get("error")
    assert not [line for line in log if not line.startswith("warning: ")], log  # no error, no page error
    warnings = [line for line in log if EXTENSION in line]
    assert len(warnings) == 1 and web["broken_message"] in warnings[0], log
    assert result["material"]["type"] == "MeshBasicMaterial" and not result["material"]["neural"]
    px = _pixels(result["views"]["capture"])
    cap, hit = render_primitive(web["prim"], web["frames"]["capture"], "captured")
    covered = px[..., 3] > 127
    assert (covered ^ hit).sum() <= 0.08 * hit.sum()
    both = erode(covered, ERODE) & erode(hit, ERODE)
    # the unlit captured texture; three.js filters it with mipmaps, the reference without (30 dB)
    assert psnr(px[..., :3] / 255.0, cap, both) > 25
