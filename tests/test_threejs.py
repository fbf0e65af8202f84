"""The relightable GLB in a real web reader: three.js's GLTFLoader in headless Chromium.

The page (tools/web/check.html + check.js) and three.js (tools/web/node_modules, `npm ci` there)
are served with the GLB and its .hdr from a localhost HTTP server; Chromium renders through
SwiftShader (software WebGL), so no GPU is needed. The page renders the default PBR materials lit
by our .hdr, then the `captured` variant, and reports what it saw. Skips, saying why, when
Chromium, playwright or three.js are missing; scripts/test.sh installs all three.
"""
from __future__ import annotations

import functools
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from nrconvert.export.frames import points_to_gltf
from nrconvert.export.glb import write_glb

REPO = Path(__file__).resolve().parents[1]
WEB = REPO / "tools" / "web"
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
TIMEOUT_MS = 180_000  # SwiftShader compiles the PBR shaders on the CPU: slow on 2 cores

pytestmark = pytest.mark.timeout(420)


def _chromium() -> str:
    for path in CHROMIUM:
        if Path(path).is_file():
            return path
    found = shutil.which("chromium")
    if found is None:
        pytest.skip("Chromium is not installed (scripts/test.sh installs Debian's `chromium`)")
    return found


def _samples():
    """The PBR sample assets of the export tests (same package)."""
    from . import test_export_pbr

    return test_export_pbr


class _Handler(SimpleHTTPRequestHandler):
    """Serves `root` (tools/web unless told) at / and the test's asset folder at /asset/, quietly."""

    extensions_map: ClassVar[dict[str, str]] = {**SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript",
                      ".glb": "model/gltf-binary", ".hdr": "application/octet-stream"}

    def __init__(self, *args, asset_dir: Path, root: Path = WEB, **kwargs):
        self.asset_dir = asset_dir
        super().__init__(*args, directory=str(root), **kwargs)

    def translate_path(self, path: str) -> str:
        clean = path.split("?", 1)[0].split("#", 1)[0]
        if clean.startswith("/asset/"):
            return str(self.asset_dir / Path(clean[len("/asset/"):]).name)
        return super().translate_path(path)

    def log_message(self, format: str, *args) -> None:
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    asset_dir = tmp_path_factory.mktemp("web_asset")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0),
                                functools.partial(_Handler, asset_dir=asset_dir))
    httpd.timeout = 10
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", asset_dir
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def rendered(server, tmp_path_factory):
    """The page's report on our PBR asset, plus every console error and page error."""
    executable = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="needs playwright (pip install playwright)")
    if not (WEB / "node_modules" / "three" / "build" / "three.module.js").is_file():
        pytest.skip("three.js is not installed: cd tools/web && npm ci")
    url, asset_dir = server
    samples = _samples()
    asset = samples.make_pbr_asset()
    write_glb(asset, asset_dir / "relit.glb", version="0.1.0-web-test")
    problems: list[str] = []
    profile = tmp_path_factory.mktemp("chromium_profile")
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=executable, headless=True, args=CHROMIUM_ARGS,
            timeout=TIMEOUT_MS)
        try:
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.on("console", lambda m: problems.append(f"console.{m.type}: {m.text}")
                    if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            page.goto(f"{url}/check.html?glb=/asset/relit.glb", timeout=TIMEOUT_MS)
            page.wait_for_function("window.__result !== undefined", timeout=TIMEOUT_MS)
            result = page.evaluate("window.__result")
            if "error" not in result:
                result["probes"] = {name: page.evaluate("probeEnvironment", d)
                                    for name, d in _probe_directions(asset.light.equirect).items()}
        finally:
            context.close()
    return asset, samples, result, problems


def _probe_directions(equirect: np.ndarray) -> dict[str, list[float]]:
    """glTF-frame directions towards the map's brightest pixel ("sun") and towards the opposite
    azimuth at the same elevation, from the layout documented on bake.asset.EnvLight."""
    h, w = equirect.shape[:2]
    y, x = np.unravel_index(np.argmax(equirect[..., 0]), (h, w))
    theta = np.pi * (0.5 - (y + 0.5) / h)
    out = {}
    for name, phi in (("sun", 2 * np.pi * (0.5 - (x + 0.5) / w)),
                      ("opposite", 2 * np.pi * (0.5 - (x + 0.5) / w) + np.pi)):
        d = np.array([[np.cos(theta) * np.cos(phi), np.cos(theta) * np.sin(phi), np.sin(theta)]])
        out[name] = points_to_gltf(d, "z")[0].tolist()
    return out


def test_page_loads_without_errors(rendered):
    _, _, result, problems = rendered
    assert "error" not in result, result.get("error")
    assert problems == []
    assert "WebGL 2" in result["renderer"]


def test_scene_shows_lod0_only_and_lods_load_by_id(rendered):
    asset, samples, result, _ = rendered
    assert result["meshes"] == [f"{samples.NAME}_LOD0"]  # lower LODs are not scene roots
    assert [lod["name"] for lod in result["lods"]] == [f"{samples.NAME}_LOD{k}" for k in range(3)]
    assert [lod["triangles"] for lod in result["lods"]] == [lod.mesh.n_triangles
                                                           for lod in asset.lods]
    assert result["cameras"] == ["000_r_000"]


def test_pbr_materials_in_threejs(rendered):
    asset, _, result, _ = rendered
    for k, lod in enumerate(result["lods"]):
        mat, size = lod["material"], asset.lods[k].maps.size
        assert mat["type"] == "MeshStandardMaterial"
        assert mat["map"]["colorSpace"] == "srgb"
        assert (mat["map"]["width"], mat["map"]["height"]) == size
        assert mat["ormShared"] and mat["aoMap"]["colorSpace"] != "srgb"
        if asset.lods[k].maps.normal is not None:
            assert mat["normalMap"] is not None and "tangent" in lod["attributes"]
        else:
            assert mat["normalMap"] is None and "tangent" not in lod["attributes"]
    assert result["environment"]  # the .hdr named in the metadata loaded as scene.environment


def test_rendered_frames_are_not_blank(rendered):
    asset, _, result, _ = rendered
    lit, unlit = result["lit"], result["unlit"]
    assert 0.1 < lit["covered"] < 0.95, lit  # the capture camera frames the object
    assert max(lit["std"]) > 3 and max(lit["mean"]) > 20, lit  # shaded, textured, not black
    assert result["variants"] == ["captured"]
    assert result["variantMaterial"]["type"] == "MeshBasicMaterial"  # unlit
    assert unlit["covered"] == pytest.approx(lit["covered"], abs=0.02)
    # the captured texture's blue channel is a constant 60 on LOD0: unlit, it shows as is
    assert abs(unlit["medianBlue"] - int(asset.lods[0].maps.captured[0, 0, 2])) <= 3, unlit
    assert np.abs(np.subtract(lit["mean"], unlit["mean"])).max() > 5  # the variant switched


def test_environment_layout_matches_threejs(rendered):
    """docs/format.md: for a Z-up capture the .hdr, used as-is as three.js's equirectangular
    environment of the glTF scene, puts the light where the capture saw it."""
    _, _, result, _ = rendered
    assert result["probes"]["sun"][0] >= 250, result["probes"]  # the 180-radiance sun, clipped
    assert result["probes"]["opposite"][0] < 235, result["probes"]  # plain sky
