"""scene.report/index.html of a real (tiny) conversion, opened from disk (file://, no server, no
network) in headless Chromium, as a user double-clicking it would: no console or page error, a
3D view that draws the asset and changes with the look and the LOD, and tables, curves and
pictures that hold the run's own numbers (metrics.json, training.json, the GLB).

A second copy of the report embeds a GLB whose NRC_neural_material is malformed: the view must
fall back to the unlit texture and say so on the page. Reuses tests/test_threejs.py's Chromium
set-up (SwiftShader: no GPU needed) and skips, saying why, without Chromium, playwright or bpy.
"""
from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
from nrconvert.export.neural import EXTENSION
from nrconvert.export.reader import lod_primitives, read_glb
from nrconvert.report.assets import write_glb_script
from nrconvert.report.lods import lod_chain
from PIL import Image

from tests.test_threejs import CHROMIUM_ARGS, TIMEOUT_MS, _chromium
from tests.test_threejs_neural import psnr, rewrite_glb_json

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
BACKGROUND = np.array([0x2B, 0x2D, 0x31])  # viewer.js's clear colour
READY = "window.nrcViewer !== undefined"
COLLECT_JS = """() => {
  const rows = (sel) => [...document.querySelectorAll(sel)].map((r) => ({...r.dataset,
    cells: [...r.cells].map((c) => c.textContent)}));
  return {
    metrics: rows('#metrics tr[data-key]'), timings: rows('#timings tr[data-key]'), lods: rows('#lods tr[data-name]'),
    charts: [...document.querySelectorAll('#training svg.chart')].map((s) => s.outerHTML),
    views: [...document.querySelectorAll('#views figure.pair')].map((f) => ({...f.dataset,
      images: [...f.querySelectorAll('img')].map((i) => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0}))})),
    note: document.getElementById('viewer-note').hidden ? null : document.getElementById('viewer-note').textContent,
  };
}"""


def _canvas(page) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(page.locator("#view3d").screenshot())).convert("RGB")).astype(int)


def _covered(img: np.ndarray) -> np.ndarray:
    return np.abs(img - BACKGROUND).sum(-1) > 24


def _break_neural(doc: dict) -> None:
    """Drops one weight from every neural material: the spec's first malformation."""
    for mat in doc["materials"]:
        ext = (mat.get("extensions") or {}).get(EXTENSION)
        if ext:
            ext["layers"][0]["weights"] = ext["layers"][0]["weights"][:-1]


def _open(context, url: str):
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    # offline: everything comes from the report folder (or from memory), nothing from a network
    page.on("request", lambda r: None if r.url.split(":", 1)[0] in ("file", "data", "blob")
            else problems.append(f"network request: {r.url}"))
    page.goto(url, timeout=TIMEOUT_MS)
    page.wait_for_function(f"{READY} || !document.getElementById('viewer-note').hidden", timeout=TIMEOUT_MS)
    return page, problems


def _set(page, what: str, value: str) -> dict:
    """Picks `value` in the page's <select id=what> as a user would and waits for the view."""
    key = {"look": "look", "lod": "mode"}[what]
    page.select_option(f"#{what}", value)
    expected = json.dumps(value if what == "look" or value == "auto" else int(value))
    page.wait_for_function(f"window.nrcViewer.state().{key} === {expected}")
    return page.evaluate("window.nrcViewer.state()")


@pytest.fixture(scope="module")
def report(tiny_conversion, tmp_path_factory):
    executable = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install playwright)")
    glb, _ = tiny_conversion
    folder = glb.with_suffix(".report")
    broken = tmp_path_factory.mktemp("broken_report") / "scene.report"
    shutil.copytree(folder, broken)
    rewrite_glb_json(glb, broken.parent / "scene.glb", _break_neural)
    assert write_glb_script(broken, broken.parent / "scene.glb") is None
    out = {"folder": folder, "glb": glb}
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS, timeout=TIMEOUT_MS)
        try:
            context = browser.new_context(viewport={"width": 1100, "height": 900})
            page, problems = _open(context, (folder / "index.html").as_uri())
            out["dom"] = page.evaluate(COLLECT_JS)
            out["state"] = page.evaluate(f"{READY} ? window.nrcViewer.state() : null")
            if out["state"] is not None:
                shots = {"neural": _canvas(page)}
                for look in out["state"]["looks"][1:]:
                    _set(page, "look", look)
                    shots[look] = _canvas(page)
                _set(page, "look", out["state"]["look"])
                for k in range(len(out["state"]["levels"])):
                    out[f"lod{k}_state"] = _set(page, "lod", str(k))
                    shots[f"lod{k}"] = _canvas(page)
                _set(page, "lod", "auto")
                box = page.locator("#view3d").bounding_box()
                x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
                page.mouse.move(x, y)
                page.mouse.down()
                page.mouse.move(x + 150, y + 40, steps=5)
                page.mouse.up()
                shots["orbited"] = _canvas(page)
                out["distances"] = {f: (page.evaluate(f"window.nrcViewer.setDistance({f})"),
                                        page.evaluate("window.nrcViewer.state()"))[1] for f in (1, 2, 4, 8, 16, 32)}
                out["shots"] = shots
            out["problems"] = problems
            page, problems = _open(context, (broken / "index.html").as_uri())
            out["broken"] = {"dom": page.evaluate(COLLECT_JS), "problems": problems,
                             "state": page.evaluate(f"{READY} ? window.nrcViewer.state() : null"),
                             "shot": _canvas(page)}
        finally:
            browser.close()
    return out


def test_page_loads_from_disk_without_errors(report):
    assert report["problems"] == []
    assert report["dom"]["note"] is None  # no fallback note: the neural material decoded
    state = report["state"]
    assert state is not None and "WebGL 2" in state["renderer"]
    assert state["looks"] == ["neural", "captured", "pbr"] and state["look"] == "neural"


def test_3d_view_is_not_blank_and_follows_look_and_lod(report):
    shots = report["shots"]
    neural = shots["neural"]
    covered = _covered(neural)
    assert 0.05 < covered.mean() < 0.9, covered.mean()  # the asset fills a good part of the view
    assert neural[covered].std(0).max() > 15  # textured, not a flat silhouette
    for look in ("captured", "pbr"):  # same silhouette, other shading
        other = shots[look]
        assert np.abs(_covered(other).mean() - covered.mean()) < 0.02
        both = covered & _covered(other)
        assert np.abs(neural[both] - other[both]).mean() > 3, look
    orbited = shots["orbited"]  # dragged with the mouse: the asset turned, still in view
    assert _covered(orbited).mean() > 0.05 and (np.abs(orbited - neural).sum(-1) > 30).mean() > 0.02
    lod0, lod1 = shots["lod0"], shots["lod1"]
    assert report["lod0_state"]["lod"] == 0 and report["lod1_state"]["lod"] == 1
    assert (np.abs(lod0 - lod1).sum(-1) > 30).mean() > 0.003  # another mesh and atlas
    assert np.abs(_covered(lod0).mean() - _covered(lod1).mean()) < 0.03  # of the same object


def test_auto_lod_follows_the_files_screen_coverage(report):
    chain, thresholds = lod_chain(read_glb(report["glb"]).doc)
    assert thresholds is not None and len(thresholds) == len(report["state"]["levels"]) == 2
    seen = []
    for factor, state in report["distances"].items():
        expected = next((k for k, c in enumerate(thresholds) if state["coverage"] > c), len(thresholds) - 1)
        assert state["lod"] == expected, (factor, state, thresholds)
        seen.append(state["lod"])
    assert seen[0] == 0 and seen[-1] == len(thresholds) - 1 and seen == sorted(seen)
    cov = [s["coverage"] for s in report["distances"].values()]
    assert all(a > b for a, b in zip(cov, cov[1:]))  # farther: less of the screen


def test_metrics_and_timings_tables_hold_the_runs_numbers(report):
    metrics = json.loads((report["folder"] / "metrics.json").read_text())
    rows = {r["key"]: r for r in report["dom"]["metrics"]}
    for key in ("heldout.psnr_object", "heldout.ssim_object", "heldout.psnr_full", "field_heldout_psnr",
                "geometry.chamfer_ratio_of_bbox_diagonal", "geometry.fscore", "triangles"):
        value = metrics
        for part in key.split("."):
            value = value[part]
        assert float(rows[key]["value"]) == value, key
    assert rows["heldout.psnr_object"]["cells"][1] == f"{metrics['heldout']['psnr_object']:.2f} dB"
    assert rows["triangles"]["cells"][1] == f"{metrics['triangles']:,}"
    timings = {r["key"]: float(r["value"]) for r in report["dom"]["timings"]}
    assert {k: v for k, v in timings.items() if k != "total"} == metrics["timings_s"]
    assert timings["total"] == pytest.approx(sum(metrics["timings_s"].values()))
    assert set(metrics["timings_s"]) >= {"train", "extract", "bake", "neural", "export"}


def test_training_curves_hold_the_history(report):
    from .test_report_parts import _plot, _points

    history = json.loads((report["folder"] / "training.json").read_text())["history"]
    assert len(report["dom"]["charts"]) == 2
    psnr_root, psnr_value = _plot(report["dom"]["charts"][0])
    train = [(h["seconds"], h["train_psnr"]) for h in history]
    drawn = [psnr_value(*p) for p in _points(psnr_root, "train")]
    assert len(drawn) == min(len(train), 600)
    np.testing.assert_allclose(drawn[-1], train[-1], atol=0.05)
    np.testing.assert_allclose(drawn[0], train[0], atol=0.05)
    held = [(h["seconds"], h["test_psnr"]) for h in history if "test_psnr" in h]
    np.testing.assert_allclose([psnr_value(*p) for p in _points(psnr_root, "held-out")], held, atol=0.05)
    loss_root, loss_value = _plot(report["dom"]["charts"][1])
    last = loss_value(*_points(loss_root, "loss")[-1])
    assert last[1] == pytest.approx(history[-1]["loss"], rel=0.01)


def test_heldout_pairs_are_the_measured_views(report):
    metrics = json.loads((report["folder"] / "metrics.json").read_text())
    views = report["dom"]["views"]
    per_view = metrics["heldout"]["per_view"]
    assert len(views) == min(metrics["heldout"]["views"], 8) > 0
    for view, stats in zip(views, per_view):
        assert view["file"] == stats["file"] and float(view["psnrFull"]) == stats["psnr_full"]
        assert [i["ok"] for i in view["images"]] == [True, True], view  # both pictures load
        photo, render = (np.asarray(Image.open(report["folder"] / i["src"]).convert("RGB")) / 255.0
                         for i in view["images"])
        # the two pictures are what the metric compared: their PSNR is the row's (8-bit rounding aside)
        assert psnr(photo, render, np.ones(photo.shape[:2], bool)) == pytest.approx(stats["psnr_full"], abs=0.2)


def test_lod_table_matches_the_glb_and_the_viewer(report):
    prims = lod_primitives(read_glb(report["glb"]))
    rows = report["dom"]["lods"]
    assert [r["name"] for r in rows] == [p.name for p in prims] == [lv["name"] for lv in report["state"]["levels"]]
    assert [int(r["triangles"]) for r in rows] == [len(p.faces) for p in prims]
    assert [int(r["triangles"]) for r in rows] == [lv["triangles"] for lv in report["state"]["levels"]]
    assert int(rows[0]["triangles"]) == json.loads((report["folder"] / "metrics.json").read_text())["triangles"]
    assert [int(r["vertices"]) for r in rows] == [len(p.positions) for p in prims]
    assert 0 < sum(int(r["bytes"]) for r in rows) <= report["glb"].stat().st_size


def test_malformed_neural_material_falls_back_with_a_note(report):
    broken = report["broken"]
    assert broken["problems"] == []  # the decoder warns (console.warn), nothing fails
    assert broken["state"] is not None and broken["state"]["look"] == "neural"
    assert "layers[0].weights" in broken["dom"]["note"] and "unlit captured texture" in broken["dom"]["note"]
    shot = broken["shot"]
    assert _covered(shot).mean() > 0.05
    # the fallback is the captured texture: the same picture as the good report's captured look
    both = _covered(shot) & _covered(report["shots"]["captured"])
    assert np.abs(shot[both] - report["shots"]["captured"][both]).mean() < 2


def _synthetic_report(folder, asset) -> None:
    """A report page around `asset` alone (no conversion): the page, the bundle, the GLB."""
    from nrconvert.export.glb import write_glb
    from nrconvert.report import assets, html
    from nrconvert.report.lods import lod_rows

    folder.mkdir(parents=True)
    glb = folder.parent / "asset.glb"
    write_glb(asset, glb, version="0.1.0-report-test")
    assert assets.copy_bundle(folder) is None and assets.write_glb_script(folder, glb) is None
    page = html.Page(glb_name=glb.name, glb_bytes=glb.stat().st_size, metrics={}, timings={"export": 0.1},
                     history=[], views=[], lods=lod_rows(glb))
    (folder / "index.html").write_text(html.render_page(page), encoding="utf-8")


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    """The viewer on the two other material layouts nrconvert writes: PBR + captured variant
    without a neural material (--no-neural; with the .hdr light), and the captured material with
    its neural extension as the default (--no-pbr)."""
    executable = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install playwright)")
    from tests.test_export_pbr import make_pbr_asset
    from tests.test_threejs_neural import smooth_material

    no_neural = make_pbr_asset(with_light=True)
    no_pbr = make_pbr_asset(with_light=False)
    for k, lod in enumerate(no_pbr.lods):
        lod.maps.base_color = lod.maps.orm = lod.maps.normal = None
        lod.maps.neural = smooth_material(64 >> k, seed=k)
    out = {}
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS, timeout=TIMEOUT_MS)
        try:
            context = browser.new_context(viewport={"width": 900, "height": 700})
            for name, asset in (("no_neural", no_neural), ("no_pbr", no_pbr)):
                folder = tmp_path_factory.mktemp(name) / "asset.report"
                _synthetic_report(folder, asset)
                page, problems = _open(context, (folder / "index.html").as_uri())
                state = page.evaluate(f"{READY} ? window.nrcViewer.state() : null")
                shots = {state["look"]: _canvas(page)} if state else {}
                for look in (state or {}).get("looks", [])[1:]:
                    _set(page, "look", look)
                    shots[look] = _canvas(page)
                out[name] = {"state": state, "problems": problems, "shots": shots, "asset": asset,
                             "note": page.evaluate(COLLECT_JS)["note"]}
        finally:
            browser.close()
    return out


@pytest.mark.parametrize("name, looks", [("no_neural", ["captured", "pbr"]), ("no_pbr", ["neural", "captured"])])
def test_viewer_offers_the_looks_the_file_has(layouts, name, looks):
    result = layouts[name]
    assert result["problems"] == [] and result["note"] is None
    state = result["state"]
    assert state["looks"] == looks and state["look"] == looks[0]
    assert [lv["triangles"] for lv in state["levels"]] == [lod.mesh.n_triangles for lod in result["asset"].lods]
    first, second = (result["shots"][look] for look in looks)
    assert _covered(first).mean() > 0.02 and _covered(second).mean() > 0.02
    both = _covered(first) & _covered(second)
    assert np.abs(first[both] - second[both]).mean() > 3  # the looks differ
