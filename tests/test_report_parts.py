"""The report's parts without a browser or a conversion: number formatting, SVG charts (read back
with an XML parser and mapped back to the values), the LOD table of a written GLB, the atomic
folder swap, the embedded-GLB size limit, and that the committed viewer bundle was built from
the sources as they are now."""
from __future__ import annotations

import hashlib
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from nrconvert.export.glb import write_glb
from nrconvert.export.reader import accessor, read_glb
from nrconvert.report import assets, charts, fmt, html, writer
from nrconvert.report.lods import lod_rows

REPO = Path(__file__).resolve().parents[1]
SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize("value, digits, text", [
    (19.268590981617475, 3, "19.3"), (0.8650278, 3, "0.865"), (7998, 3, "7,998"), (8000.0, 3, "8,000"),
    (1234.5678, 3, "1,235"), (0.0129, 3, "0.0129"), (2.4e-6, 3, "2.40e-06"), (None, 3, "\u2013"),
    (float("nan"), 3, "\u2013"), (float("inf"), 3, "\u221e"), (0.0, 3, "0"), (-3.14159, 2, "-3.1"), (True, 3, "true"),
])
def test_number(value, digits, text):
    assert fmt.number(value, digits) == text


def test_units():
    assert fmt.fixed(19.268, 2, "dB") == "19.27 dB" and fmt.fixed(0.8650, 3) == "0.865" and fmt.fixed(None, 2) == "\u2013"
    assert fmt.percent(0.005421) == "0.5 %" and fmt.percent(0.005421, 2) == "0.54 %" and fmt.percent(1.0) == "100.0 %"
    assert [fmt.size(n) for n in (0, 999, 1024, 999416, 5 << 20, 3 << 30)] == [
        "0 B", "999 B", "1 KiB", "976 KiB", "5 MiB", "3 GiB"]
    assert fmt.size(1_391_205) == "1.33 MiB"
    assert [fmt.duration(s) for s in (0.001, 0.00716, 0.3, 14.86, 59.4, 125.2, 3725)] == [
        "< 0.01 s", "0.01 s", "0.30 s", "14.9 s", "59.4 s", "2 min 05 s", "1 h 02 min"]


def test_ticks():
    assert [fmt.tick(v, 2.5) for v in (0.0, 2.5, 5.0, 12.5)] == ["0.0", "2.5", "5.0", "12.5"]
    assert [fmt.tick(v, 5) for v in (0, 5, 35)] == ["0", "5", "35"]
    assert fmt.tick(0.3, 0.1) == "0.3" and fmt.tick(0.003, 0.001) == "0.003" and fmt.tick(2000, 1000) == "2,000"
    assert [fmt.log_tick(v) for v in (1e-3, 0.1, 10.0, 1e6)] == ["0.001", "0.1", "10", "1e+06"]


def test_nice_ranges():
    assert charts.nice_step(13.41, 5) == 5 and charts.nice_step(0.9, 5) == 0.2 and charts.nice_step(11, 5) == 2.5
    lo, hi, ticks = charts.nice_range(0.09, 13.5)
    assert (lo, hi, ticks) == (0.0, 15.0, [0.0, 5.0, 10.0, 15.0])
    lo, hi, ticks = charts.nice_range(18.78, 32.12)
    assert lo <= 18.78 and hi >= 32.12 and len(ticks) >= 4 and ticks[0] == lo and ticks[-1] == hi
    assert charts.nice_range(30.0, 30.0)[:2] == (26.0, 34.0)  # one value: +-10 %, widened to steps of 2
    assert charts.log_range(0.0013, 0.0162) == (0.001, 0.1, [0.001, 0.01, 0.1])
    assert charts.log_range(0.5, 0.5)[:2] == (0.1, 1.0)


def test_thin_keeps_the_ends():
    xs, ys = charts.thin(list(range(10_000)), list(range(10_000)), 600)
    assert len(xs) == 600 and xs[0] == 0 and xs[-1] == 9_999 and xs == sorted(xs) and xs == ys
    assert charts.thin([1, 2], [3, 4], 600) == ([1, 2], [3, 4])


def _plot(svg: str):
    root = ET.fromstring(svg)
    plot = root.find(f".//{SVG}g[@class='plot']")
    a = {k: float(plot.get(k)) for k in ("data-x0", "data-x1", "data-y0", "data-y1", "data-left", "data-right",
                                         "data-top", "data-bottom")}
    log = plot.get("data-log-y") == "true"

    def value(px: float, py: float) -> tuple[float, float]:
        x = a["data-x0"] + (px - a["data-left"]) / (a["data-right"] - a["data-left"]) * (a["data-x1"] - a["data-x0"])
        t = (a["data-bottom"] - py) / (a["data-bottom"] - a["data-top"])
        if log:
            lo, hi = math.log10(a["data-y0"]), math.log10(a["data-y1"])
            return x, 10 ** (lo + t * (hi - lo))
        return x, a["data-y0"] + t * (a["data-y1"] - a["data-y0"])
    return root, value


def _points(root, name: str) -> list[tuple[float, float]]:
    group = root.find(f".//{SVG}g[@data-series='{name}']")
    line = group.find(f"{SVG}polyline")
    if line is not None:
        return [tuple(map(float, p.split(","))) for p in line.get("points").split()]
    return [(float(c.get("cx")), float(c.get("cy"))) for c in group.findall(f"{SVG}circle")]


def test_line_chart_maps_back_to_the_data():
    xs = np.linspace(0.1, 12.4, 400)
    ys = 18 + 14 * (1 - np.exp(-xs / 4))
    svg = charts.line_chart([charts.Series("train", xs, ys, "#00f"),
                             charts.Series("held-out", [12.4], [29.9], "#f80", markers=True),
                             charts.Series("empty", [1.0], [float("nan")], "#000")],
                            title="PSNR <field>", x_label="s", y_label="dB")
    root, value = _plot(svg)  # parses: the title's "<" is escaped
    assert root.find(f"{SVG}title").text == "PSNR <field>"
    train = _points(root, "train")
    assert len(train) == 400
    back = np.array([value(*p) for p in train])
    np.testing.assert_allclose(back[:, 0], xs, atol=0.01)
    np.testing.assert_allclose(back[:, 1], ys, atol=0.01)
    (held,) = _points(root, "held-out")
    np.testing.assert_allclose(value(*held), (12.4, 29.9), atol=0.01)
    assert root.find(f".//{SVG}g[@data-series='empty']") is None  # NaN only: left out
    labels = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "tick x"]
    assert labels == ["0.0", "2.5", "5.0", "7.5", "10.0", "12.5"]


def test_log_chart_and_empty_chart():
    losses = [0.016, 0.008, 0.004, 0.0, -1.0, 0.0013]  # <= 0 cannot be drawn on a log axis
    svg = charts.line_chart([charts.Series("loss", range(6), losses, "#080")], title="loss", x_label="step",
                            y_label="loss", log_y=True, max_points=3)
    root, value = _plot(svg)
    pts = [value(*p) for p in _points(root, "loss")]
    assert len(pts) == 3  # 4 drawable points thinned to 3, the ends kept
    np.testing.assert_allclose([p[1] for p in pts], [0.016, 0.004, 0.0013], rtol=1e-3)
    with pytest.raises(ValueError, match="no data"):
        charts.line_chart([charts.Series("x", [], [], "#000")], title="t", x_label="x", y_label="y")


def test_lod_rows_match_the_written_glb(tmp_path):
    from . import test_export_pbr as samples

    asset = samples.make_pbr_asset()
    path = tmp_path / "pbr.glb"
    write_glb(asset, path, version="test")
    rows = lod_rows(path)
    glb = read_glb(path)
    assert [r.name for r in rows] == [f"{samples.NAME}_LOD{k}" for k in range(len(asset.lods))]
    assert [r.triangles for r in rows] == [lod.mesh.n_triangles for lod in asset.lods]
    assert [r.vertices for r in rows] == [
        len(accessor(glb, glb.doc["meshes"][glb.doc["nodes"][i]["mesh"]]["primitives"][0]["attributes"]["POSITION"]))
        for i in [next(i for i, n in enumerate(glb.doc["nodes"]) if n.get("name") == r.name) for r in rows]]
    assert [r.texture for r in rows] == [tuple(lod.maps.size) for lod in asset.lods]
    assert [r.coverage for r in rows] == pytest.approx([lod.screen_coverage for lod in asset.lods])
    # every level has its own mesh and images; together they are nearly the whole file
    assert all(r.bytes > 0 for r in rows) and rows[0].bytes > rows[-1].bytes
    assert 0.8 * path.stat().st_size < sum(r.bytes for r in rows) <= path.stat().st_size


def test_glb_script_and_its_size_limit(tmp_path):
    glb = tmp_path / "a.glb"
    glb.write_bytes(b"glTF" + bytes(range(256)) * 8)
    glb.with_suffix(".hdr").write_bytes(b"#?RADIANCE\n")
    assert assets.write_glb_script(tmp_path, glb) is None
    text = (tmp_path / "scene.glb.js").read_text()
    import base64
    import re
    data = {k: base64.b64decode(v) for k, v in re.findall(r'window\.(NRC_\w+) = "([^"]*)";', text)}
    assert data == {"NRC_GLB": glb.read_bytes(), "NRC_HDR": b"#?RADIANCE\n"}
    (tmp_path / "scene.glb.js").unlink()
    note = assets.write_glb_script(tmp_path, glb, limit=1000)
    assert "a.glb" in note and not (tmp_path / "scene.glb.js").exists()
    page = html.Page(glb_name="a.glb", glb_bytes=2052, metrics={}, timings={"train": 1.0}, history=[], views=[],
                     lods=None, lod_error="bad", viewer_note=note)
    text = html.render_page(page)
    assert "viewer.bundle.js" not in text and "<canvas" not in text and "a.glb" in text


def test_swap_replaces_the_folder_whole(tmp_path):
    final = tmp_path / "scene.report"
    final.mkdir()
    (final / "old.txt").write_text("old")
    new = tmp_path / ".new"
    new.mkdir()
    (new / "index.html").write_text("new")
    writer._swap(new, final)
    assert sorted(p.name for p in final.iterdir()) == ["index.html"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.report"]  # nothing left behind


def test_committed_bundle_is_built_from_the_current_sources():
    """tools/web/build_report_bundle.mjs records a SHA-256 per input in the bundle's first line.
    A mismatch means a source changed without a rebuild: cd tools/web && node build_report_bundle.mjs"""
    recorded = assets.bundle_inputs()
    web = sorted(str(p.relative_to(REPO)) for p in (REPO / "converter" / "report" / "web").glob("*.js"))
    must = {*web, "converter/export/web/neural_material.js", "tools/web/build_report_bundle.mjs",
            "tools/web/package-lock.json"}
    assert must <= set(recorded), must - set(recorded)
    stale = [p for p, digest in recorded.items()
             if hashlib.sha256((REPO / p).read_bytes()).hexdigest() != digest]
    assert stale == [], f"rebuild the report bundle (cd tools/web && node build_report_bundle.mjs): {stale} changed"
    text = assets.BUNDLE.read_text(encoding="utf-8")
    assert "Permission is hereby granted" in text[:3000]  # three.js's MIT licence, in full
    assert "import " not in text.split("*/", 2)[-1][:200]  # a classic script, not a module


def test_curves_say_when_the_time_budget_ended_training():
    """A run the clock stopped says so under its curves; one that ran its steps does not."""
    history = [{"step": i, "seconds": 0.5 * i, "loss": 1.0 / i, "train_psnr": 20 + 0.1 * i} for i in range(1, 40)]
    done = html.curves_section(history)
    history[-1] = {**history[-1], "stopped_by": "time_budget", "budget_s": 19.5}
    cut = html.curves_section(history)
    assert "id=time-budget" not in done and "id=time-budget" in cut
    assert "time budget (" + fmt.duration(19.5) + ")" in cut and "39 steps" in cut
