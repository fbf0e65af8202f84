"""Training speed and quality: held-out PSNR against time, then Chamfer of the extracted mesh.

    python bench/train.py --preset balanced [--background opaque] [--device cuda] [--capture DIR]

Uses the `standard` synth capture (textured Suzanne, 100 train / 20 test views, 200x200), rendered
once with `nrconvert synth` into bench/.captures (or any capture given with --capture, e.g. one
carried to a GPU machine that has no Blender). Trains the SDF field with the preset, measuring the
field's own PSNR on 4 held-out views every `--every` steps (the time axis excludes those
evaluations), extracts the mesh and compares it with the ground-truth surface. Saves JSON and a
PNG plot under bench/results/ and prints a markdown row for bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _capture(args) -> Path:
    if args.capture:
        return args.capture
    from nrconvert.synth import render_capture

    path = HERE / ".captures" / f"suzanne_standard_{args.background}"
    if not (path / "transforms_train.json").exists():
        render_capture(path, object="suzanne", preset="standard", background=args.background)
    return path


def _plot(curve: list[dict], path: Path, title: str) -> None:
    """PSNR-vs-seconds line chart with PIL (no plotting library in the dependencies)."""
    from PIL import Image, ImageDraw

    w, h, m = 640, 360, 48
    img = Image.new("RGB", (w, h), "white")
    dr = ImageDraw.Draw(img)
    xs = [c["seconds"] for c in curve]; ys = [c["psnr"] for c in curve]
    x1, y0, y1 = max(xs) or 1.0, min(15.0, min(ys)), max(35.0, max(ys))
    px = lambda x: m + (w - 2 * m) * x / x1  # noqa: E731
    py = lambda y: h - m - (h - 2 * m) * (y - y0) / (y1 - y0)  # noqa: E731
    dr.rectangle([m, m, w - m, h - m], outline="black")
    for y in range(int(y0), int(y1) + 1, 5):
        dr.line([m, py(y), w - m, py(y)], fill=(220, 220, 220)); dr.text((8, py(y) - 6), f"{y} dB", fill="black")
    for x in range(0, int(x1) + 1, max(int(x1 / 6), 1)):
        dr.text((px(x) - 8, h - m + 6), f"{x}s", fill="black")
    dr.line([(px(x), py(y)) for x, y in zip(xs, ys)], fill=(200, 40, 40), width=2)
    dr.text((m, 16), title, fill="black")
    img.save(path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="balanced")
    ap.add_argument("--background", default="transparent")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--capture", type=Path)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--set", dest="sets", action="append", default=[])
    args = ap.parse_args()

    import torch

    from nrconvert.bake.extract import extract_mesh
    from nrconvert.capture.load import load_capture
    from nrconvert.config import make_config
    from nrconvert.kernels import backend
    from nrconvert.mesh import Mesh
    from nrconvert.metrics.geometry import largest_component_share, surface_metrics
    from nrconvert.synth.ply import read_ply
    from nrconvert.train.data import load_rays
    from nrconvert.train.matting import starting_shape
    from nrconvert.train.trainer import build_field, evaluate, train

    capture = load_capture(_capture(args))
    overrides = dict(s.split("=", 1) for s in args.sets)
    cfg = make_config(args.preset, {"device": args.device, **overrides})
    data = load_rays(capture.train, cfg.downscale)
    # opaque photos: the first fit that estimates masks counts as training time; `spent_s` is what
    # the main fit's budget is charged (0 when the first fit failed and gives its time back)
    t_prior = time.time()
    start = starting_shape(cfg, capture.train, data)
    prior_s, spent_s, data = time.time() - t_prior, start.spent_s, start.data
    tf = build_field(cfg, start.box, data.alpha is not None, start.hull)
    dev = tf.field.log_beta.device
    held = load_rays(capture.test[::5], cfg.downscale * 2).to(dev)
    curve: list[dict] = []
    eval_time = [0.0]

    def progress(step, total, record):
        if step % args.every == 0 or step == total:
            t = time.time()
            curve.append({"step": step, "seconds": round(record["seconds"] - eval_time[0], 2),
                          "psnr": round(evaluate(tf, held), 3)})
            eval_time[0] += time.time() - t
            print(json.dumps(curve[-1]), flush=True)

    t0 = time.time()
    train(tf, data, cfg.replace(eval_every=0), progress=progress, spent_s=spent_s)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    train_s = time.time() - t0 - eval_time[0] + prior_s
    final = evaluate(tf, held)
    t1 = time.time()
    mesh = extract_mesh(tf, cfg.mc_resolution, cfg.max_triangles, cfg.min_component_ratio)
    extract_s = time.time() - t1
    geo = {}
    if capture.gt_mesh_path:
        v, f = read_ply(Path(capture.gt_mesh_path))
        geo = surface_metrics(mesh, Mesh(v, f))
    name = f"train-{args.background}-{args.preset}-{dev.type}"
    record = {
        "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.node()} {platform.processor()}".strip(),
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu x{torch.get_num_threads()}",
        "backend": backend(dev), "preset": args.preset, "background": args.background,
        "steps": tf.history[-1]["step"] if tf.history else 0, "train_seconds": round(train_s, 1),
        "prior_seconds": round(prior_s, 1),
        "extract_seconds": round(extract_s, 1), "final_psnr": round(final, 2),
        "chamfer_pct_bbox": round(100 * geo.get("chamfer_ratio_of_bbox_diagonal", float("nan")), 3),
        "fscore": round(geo.get("fscore", float("nan")), 4),
        "largest_component_share": round(largest_component_share(mesh), 4), "curve": curve,
    }
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(record, indent=2))
    _plot(curve, out / f"{name}.png", f"{args.preset} / {args.background} / {record['device']} ({record['backend']})")
    print(json.dumps({k: v for k, v in record.items() if k != "curve"}))
    print(f"| {record['date']} | {record['device']} | {args.preset} ({args.background}) | {record['steps']} "
          f"| {record['train_seconds']} s | {record['final_psnr']} dB | {record['chamfer_pct_bbox']} % "
          f"| {record['largest_component_share']} |")


if __name__ == "__main__":
    main()
