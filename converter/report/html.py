"""index.html: one page, no network, every number from the run.

Each table cell that shows a number also holds it unrounded in `data-value` (metrics under
`data-key`, the dotted path in metrics.json), so what the page says can be checked against
metrics.json by a script as well as by eye.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from . import fmt
from .charts import Series, line_chart
from .lods import LodRow

STYLE = Path(__file__).with_name("style.css")

# (dotted key in metrics.json, label, formatter, hint); other numbers follow under their keys
METRICS = [
    ("heldout.psnr_object", "Held-out PSNR, object", lambda v: fmt.fixed(v, 2, "dB"), "photo vs asset where the object is"),
    ("heldout.ssim_object", "Held-out SSIM, object", lambda v: fmt.fixed(v, 3), ""),
    ("heldout.psnr_full", "Held-out PSNR, full frame", lambda v: fmt.fixed(v, 2, "dB"), "over black"),
    ("heldout.ssim_full", "Held-out SSIM, full frame", lambda v: fmt.fixed(v, 3), ""),
    ("heldout.views", "Held-out views", fmt.number, ""),
    ("field_heldout_psnr", "Field held-out PSNR", lambda v: fmt.fixed(v, 2, "dB"), "the trained field, before baking"),
    ("geometry.chamfer_ratio_of_bbox_diagonal", "Chamfer distance", lambda v: fmt.percent(v, 2),
     "of the reference bounding-box diagonal"),
    ("geometry.chamfer_l1", "Chamfer distance (L1)", fmt.number, "scene units"),
    ("geometry.fscore", "F-score", lambda v: fmt.fixed(v, 3), "surface points within the threshold"),
    ("geometry.precision", "Precision", lambda v: fmt.fixed(v, 3), ""),
    ("geometry.recall", "Recall", lambda v: fmt.fixed(v, 3), ""),
    ("geometry.tau", "F-score threshold", fmt.number, "scene units"),
    ("geometry.gt_bbox_diagonal", "Reference bounding-box diagonal", fmt.number, "scene units"),
    ("triangles", "Triangles (LOD0)", fmt.number, ""),
    ("largest_component_share", "Largest component", fmt.percent, "share of the triangles"),
]
SKIP = {"heldout.per_view", "version", "created", "glb", "timings_s", "texture_size"}
COLORS = {"train": "#1a73e8", "held-out": "#e8710a", "loss": "#188038"}


@dataclass
class Page:
    """Everything the page shows, gathered by writer.write_report."""

    glb_name: str
    glb_bytes: int
    metrics: dict
    timings: dict[str, float]
    history: list[dict]
    views: list[dict]  # {file, photo, render, small} (paths relative to the page)
    lods: list[LodRow] | None
    lod_error: str | None = None
    viewer_note: str | None = None  # why there is no 3D view; None: there is one
    files: list[str] = field(default_factory=list)


def render_page(page: Page) -> str:
    m = page.metrics
    title = f"nrconvert report: {page.glb_name}"
    head = (f"<!doctype html>\n<html lang=en>\n<head>\n<meta charset=utf-8>\n<title>{escape(title)}</title>\n"
            '<link rel="icon" href="data:,">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<style>\n{STYLE.read_text(encoding='utf-8')}</style>\n</head>\n<body>\n")
    intro = (f"<h1>{escape(title)}</h1>\n<p class=meta>nrconvert {escape(str(m.get('version', '')))} · "
             f"{escape(str(m.get('created', '')))} · {escape(str(m.get('glb', page.glb_name)))} "
             f"({fmt.size(page.glb_bytes)})</p>\n")
    body = [intro, viewer_section(page.viewer_note), metrics_section(m), timings_section(page.timings),
            curves_section(page.history), views_section(page.views, m.get("heldout", {}).get("per_view", [])),
            lods_section(page.lods, page.lod_error, page.glb_bytes), _footer(page.files, not page.viewer_note)]
    scripts = "" if page.viewer_note else '<script src="scene.glb.js"></script>\n<script src="viewer.bundle.js"></script>\n'
    return head + "".join(body) + scripts + "</body>\n</html>\n"


def viewer_section(note: str | None) -> str:
    out = ['<section id="viewer">\n<h2>3D view</h2>\n']
    if note:
        out.append(f'<p class="note" id="viewer-note">{escape(note)}</p>\n')
    else:
        out.append('<div class="bar-row"><label>Look <select id="look"></select></label>'
                   '<label>LOD <select id="lod"></select></label><span id="lod-status"></span></div>\n'
                   '<canvas id="view3d"></canvas>\n<p class="note" id="viewer-note" hidden></p>\n'
                   '<p class="hint">Drag to orbit, wheel to zoom, right-drag to pan. In <i>auto</i> the LOD '
                   "follows the screen coverage thresholds stored in the file (MSFT_lod).</p>\n")
    out.append("</section>\n")
    return "".join(out)


def _flatten(d: dict, prefix: str = "") -> dict[str, float]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if key in SKIP:
            continue
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = v
    return out


def metrics_section(metrics: dict) -> str:
    flat = _flatten(metrics)
    rows = []
    for key, label, show, hint in METRICS:
        if key in flat:
            value = flat.pop(key)
            rows.append(_metric_row(key, label, value, show(value), hint))
    for key, value in flat.items():  # anything else the run measured
        rows.append(_metric_row(key, key, value, fmt.number(value), ""))
    if "texture_size" in metrics:
        w, h = metrics["texture_size"][1], metrics["texture_size"][0]
        rows.append(f'<tr data-key="texture_size"><td>Texture (LOD0)</td><td class=num>{w} × {h}</td><td></td></tr>')
    return ("<section id=metrics>\n<h2>Metrics</h2>\n<table class=metrics>\n<tr><th>metric</th><th class=num>value</th>"
            "<th></th></tr>\n" + "\n".join(rows) + "\n</table>\n</section>\n")


def _metric_row(key: str, label: str, value: float, shown: str, hint: str) -> str:
    return (f'<tr data-key="{escape(key)}" data-value="{value!r}"><td>{escape(label)}</td>'
            f'<td class=num>{escape(shown)}</td><td class=hint>{escape(hint)}</td></tr>')


def timings_section(timings: dict[str, float]) -> str:
    total = sum(timings.values())
    rows = []
    for stage, seconds in timings.items():
        share = seconds / total if total > 0 else 0.0
        rows.append(f'<tr data-key="{escape(stage)}" data-value="{seconds!r}"><td>{escape(stage)}</td>'
                    f"<td class=num>{fmt.duration(seconds)}</td><td class=num>{fmt.percent(share)}</td>"
                    f'<td><span class=bar style="width:{300 * share:.0f}px"></span></td></tr>')
    rows.append(f'<tr class=total data-key="total" data-value="{total!r}"><td>total</td>'
                f"<td class=num>{fmt.duration(total)}</td><td class=num>100 %</td><td></td></tr>")
    return ("<section id=timings>\n<h2>Time per stage</h2>\n<table class=timings>\n<tr><th>stage</th>"
            "<th class=num>time</th><th class=num>share</th><th></th></tr>\n" + "\n".join(rows) + "\n</table>\n</section>\n")


def curves_section(history: list[dict]) -> str:
    out = ["<section id=training>\n<h2>Training</h2>\n"]
    if not history:
        out.append("<p class=note>No training history: the field was loaded from the work folder "
                   "(--resume), so its curves are in the report of the run that trained it.</p>\n")
        return "".join(out) + "</section>\n"
    x_key = "seconds" if all("seconds" in h for h in history) else "step"
    x_label = "training time (s)" if x_key == "seconds" else "step"

    def series(key: str, name: str, color: str, markers: bool = False) -> Series:
        pts = [(h[x_key], h[key]) for h in history if key in h]
        return Series(name, [p[0] for p in pts], [p[1] for p in pts], color, markers)

    charts = []
    for spec in (dict(series=[series("train_psnr", "train", COLORS["train"]),
                              series("test_psnr", "held-out", COLORS["held-out"], markers=True)],
                      title="PSNR of the field", y_label="PSNR (dB)"),
                 dict(series=[series("loss", "loss", COLORS["loss"])], title="Training loss", y_label="loss",
                      log_y=True)):
        try:
            charts.append(line_chart(spec.pop("series"), x_label=x_label, **spec))
        except ValueError:
            continue  # that quantity was not recorded
    out.append('<div class="charts">\n' + "\n".join(charts) + "\n</div>\n")
    last = history[-1]
    out.append(f"<p class=hint>{fmt.number(last.get('step'))} steps in {fmt.duration(last.get('seconds'))}; "
               "train PSNR is measured on each step's batch of rays, held-out PSNR on a held-out view.</p>\n")
    if last.get("stopped_by") == "time_budget":  # the clock ended it: the field may be under-trained
        out.append(f"<p class=note id=time-budget>Training stopped at its time budget "
                   f"({fmt.duration(last.get('budget_s'))}), not at its last step: on a busy or slow machine "
                   "the field may be under-trained. <code>--set time_budget_s=…</code> gives it more time.</p>\n")
    return "".join(out) + "</section>\n"


def views_section(views: list[dict], per_view: list[dict]) -> str:
    out = ["<section id=views>\n<h2>Held-out views</h2>\n"]
    if not views:
        out.append("<p class=note>The capture has no held-out views.</p>\n")
        return "".join(out) + "</section>\n"
    out.append("<p class=hint>Photos the training never saw (left) and the exported asset's captured texture "
               "rendered from the same camera (right).</p>\n<div class=pairs>\n")
    stats = {v.get("file"): v for v in per_view}
    for view in views:
        s = stats.get(view["file"], {})
        attrs = "".join(f' data-{k.replace("_", "-")}="{s[k]!r}"' for k in ("psnr_object", "ssim_object", "psnr_full")
                        if k in s)
        caption = [escape(view["file"])]
        if "psnr_object" in s:
            caption.append(f"object {fmt.fixed(s['psnr_object'], 2, 'dB')} / SSIM {fmt.fixed(s['ssim_object'], 3)}")
        if "psnr_full" in s:
            caption.append(f"full frame {fmt.fixed(s['psnr_full'], 2, 'dB')}")
        small = " class=small" if view.get("small") else ""
        out.append(f'<figure class=pair data-file="{escape(view["file"])}"{attrs}><div class=imgs>'
                   f'<img{small} src="{escape(view["photo"])}" alt="photo {escape(view["file"])}">'
                   f'<img{small} src="{escape(view["render"])}" alt="asset render {escape(view["file"])}"></div>'
                   f"<figcaption>{' · '.join(caption)}</figcaption></figure>\n")
    return "".join(out) + "</div>\n</section>\n"


def lods_section(rows: list[LodRow] | None, error: str | None, glb_bytes: int) -> str:
    out = ["<section id=lods>\n<h2>Levels of detail</h2>\n"]
    if rows is None:
        out.append(f"<p class=note>The LOD table could not be read from the GLB: {escape(error or '')}</p>\n")
        return "".join(out) + "</section>\n"
    out.append("<table class=lods>\n<tr><th>level</th><th class=num>triangles</th><th class=num>vertices</th>"
               "<th class=num>texture</th><th class=num>neural features</th><th class=num>screen coverage</th>"
               "<th class=num>size in file</th></tr>\n")
    for r in rows:
        out.append(f'<tr data-name="{escape(r.name)}" data-triangles="{r.triangles}" data-vertices="{r.vertices}" '
                   f'data-bytes="{r.bytes}"><td>{escape(r.name)}</td><td class=num>{fmt.number(r.triangles)}</td>'
                   f"<td class=num>{fmt.number(r.vertices)}</td><td class=num>{_wh(r.texture)}</td>"
                   f"<td class=num>{_wh(r.features)}</td><td class=num>{fmt.percent(r.coverage, 2)}</td>"
                   f"<td class=num>{fmt.size(r.bytes)}</td></tr>\n")
    out.append(f'<tr class=total data-bytes="{glb_bytes}"><td>whole GLB</td><td class=num>'
               f"{fmt.number(sum(r.triangles for r in rows))}</td><td class=num>{fmt.number(sum(r.vertices for r in rows))}"
               f"</td><td></td><td></td><td></td><td class=num>{fmt.size(glb_bytes)}</td></tr>\n</table>\n")
    out.append("<p class=hint>Screen coverage: the level shows while the object's bounding sphere covers more than "
               "this share of the frame (and less than the finer level's).</p>\n")
    return "".join(out) + "</section>\n"


def _wh(size: tuple[int, int] | None) -> str:
    return f"{size[0]} × {size[1]}" if size else "\u2013"


def _footer(files: list[str], viewer: bool) -> str:
    links = " · ".join(f'<a href="{escape(f)}">{escape(f)}</a>' for f in files)
    credit = (" The 3D view runs three.js (MIT licence, text at the top of viewer.bundle.js) with nrconvert's "
              "neural-material decoder; it needs no network.") if viewer else ""
    return f"<footer>Files: {links}.{credit}</footer>\n"
