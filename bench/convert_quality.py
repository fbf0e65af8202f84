"""End-to-end quality and time of `nrconvert` on a synth capture, measured in Blender.

    python bench/convert_quality.py --object suzanne --preset balanced [--background opaque]

Renders (or reuses) the `standard` synth capture (100 train / 20 test views, 200x200), converts it,
renders the GLB in Blender (Cycles, the capture's cameras and HDRI) twice, the `captured` variant
(the photo-lit look the reconstruction is judged by) and the default relightable PBR material under
the capture's own light, and compares each with the held-out photos on object pixels. An opaque
capture's GLB is also judged against the transparent capture of the same scene
(`blender_captured_psnr_object_masked_twin`). Prints a JSON line and a markdown row for
bench/RESULTS.md, and saves the JSON under bench/results/.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--object", default="suzanne")
    ap.add_argument("--preset", default="balanced")
    ap.add_argument("--synth-preset", default="standard")
    ap.add_argument("--background", default="transparent")
    ap.add_argument("--captures", type=Path, default=HERE / ".captures")
    ap.add_argument("--out", type=Path, default=HERE / ".runs")
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--resume", action="store_true", help="reuse the stages a previous run left in its work folder")
    args = ap.parse_args()

    from nrconvert.config import make_config
    from nrconvert.metrics.blender import blender_heldout
    from nrconvert.pipeline import Run, convert
    from nrconvert.synth import render_capture

    name = f"{args.object}_{args.synth_preset}_{args.background}"
    capture = args.captures / name
    if not (capture / "transforms_train.json").exists():
        t = time.time()
        render_capture(capture, object=args.object, preset=args.synth_preset, background=args.background)
        print(f"synth capture rendered in {time.time() - t:.0f} s")
    cfg = make_config(args.preset, dict(s.split("=", 1) for s in args.sets))
    out = args.out / f"{name}_{args.preset}" / "scene.glb"
    out.parent.mkdir(parents=True, exist_ok=True)
    t = time.time()
    result = convert(Run(capture, out, cfg, resume=args.resume))
    total = time.time() - t
    blender = blender_heldout(out, capture)  # the default material: relightable PBR under the capture's light
    captured = blender_heldout(out, capture, variant="captured")  # the photo-lit look (unlit texture)
    twin = _masked_twin(args, out) if args.background == "opaque" else None
    geo = result.metrics.get("geometry", {})
    record = {
        "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.node()} {platform.processor()}".strip(),
        "object": args.object, "background": args.background, "preset": args.preset,
        "convert_seconds": round(total, 1), "timings": {k: round(v, 1) for k, v in result.timings.items()},
        "blender_psnr_object": round(blender["psnr_object"], 2),
        "blender_ssim_object": round(blender["ssim_object"], 4),
        "blender_captured_psnr_object": round(captured["psnr_object"], 2),
        "own_psnr_object": round(result.metrics.get("heldout", {}).get("psnr_object", float("nan")), 2),
        "field_psnr": round(result.metrics.get("field_heldout_psnr", float("nan")), 2),
        "chamfer_pct_bbox": round(100 * geo.get("chamfer_ratio_of_bbox_diagonal", float("nan")), 3),
        "fscore": round(geo.get("fscore", float("nan")), 4),
        "largest_component_share": round(result.metrics.get("largest_component_share", float("nan")), 4),
        "triangles": result.metrics.get("triangles"),
    }
    if twin is not None:  # the opaque capture's GLB judged exactly as the masked capture's is
        record["blender_captured_psnr_object_masked_twin"] = round(twin["psnr_object"], 2)
    print(json.dumps(record))
    print(f"| {record['date']} | {args.object} ({args.background}) | {args.preset} | {record['convert_seconds']} s "
          f"| {record['blender_captured_psnr_object']} dB | {record['blender_psnr_object']} dB "
          f"| {record['own_psnr_object']} dB | {record['field_psnr']} dB "
          f"| {record['chamfer_pct_bbox']} % | {record['fscore']} | {record['triangles']} |")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / f"{name}_{args.preset}.json").write_text(json.dumps(record, indent=2))


def _masked_twin(args, glb: Path) -> dict:
    """The captured look of an opaque capture's GLB against the transparent capture of the same
    scene (same cameras and light, object pixels premultiplied by the true alpha): the strict
    comparison with the masked result, independent of how an opaque photo's silhouette pixels
    blend object and background."""
    from nrconvert.metrics.blender import blender_heldout
    from nrconvert.synth import render_capture

    twin = args.captures / f"{args.object}_{args.synth_preset}_transparent"
    if not (twin / "transforms_train.json").exists():
        render_capture(twin, object=args.object, preset=args.synth_preset, background="transparent")
    return blender_heldout(glb, twin, variant="captured")


if __name__ == "__main__":
    main()
