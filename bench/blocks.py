"""A street in blocks vs one field over it: held-out quality, seams, and memory per block.

    python bench/blocks.py                      # the standard street capture, preset fast, 3 blocks
    python bench/blocks.py --capture DIR --preset fast --blocks 3 --work /tmp/nrc_blocks

Both runs use the same preset, so the same total training time: one field gets steps and
time_budget_s, each of N blocks a 1/N share (docs/farm.md). The single field is `--blocks 1`: one
field over the whole scene's cube. (The plain pipeline places one object where the cameras' axes
meet, which on a street walked along covers its middle third only: not a baseline.) Both runs go
through the farm units, one process each (split, train and bake per block, merge), so a block's
peak memory is its own: peak RSS from os.wait4's rusage of exactly that process, train against
train and bake against bake.

Measured on the held-out test views, with the converter's own rasterizer and the unlit captured
texture of LOD0 (as the report), against the photos on object pixels (alpha >= 0.5):

* psnr_object: the report's number (mean over views);
* seam band vs rest: pixels whose ground-truth surface point (the capture's gt_mesh.ply, so both
  runs are judged on the same pixels) lies within `--band` of a block border along the split
  axis, against all other object pixels; PSNR of the pooled squared error of each set. The
  acceptance asks the band to be within 1.5 dB of the rest, and blocks within 1 dB of the single
  field, with each block's peak memory <= 60 % of the single field's.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NRCONVERT = str(Path(sys.executable).with_name("nrconvert"))


def run_measured(argv: list[str], log: Path) -> dict:
    """Run one process; its wall time, exit code and peak RSS (MiB) from its own rusage."""
    t = time.time()
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed with exit {proc.returncode}: see {log}")
    return {"argv": argv[1:], "seconds": round(time.time() - t, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}


def train_seconds(field: Path) -> float:
    from nrconvert.checkpoint import load_field_state

    history = load_field_state(field)["history"]
    return float(history[-1]["seconds"]) if history else 0.0


def units_run(capture: Path, work: Path, name: str, preset: str, sets: list[str], blocks: int) -> dict:
    """The conversion as its farm units, one process each: split, train and bake per block, merge."""
    out = work / f"{name}.glb"
    common = ["-o", str(out), "--blocks", str(blocks), "--preset", preset, *sets, "--progress", "json"]
    units = {"split": run_measured([NRCONVERT, "split", str(capture), *common], work / f"{name}-split.log")}
    for b in range(1, blocks + 1):
        for unit in ("train", "bake"):
            units[f"{unit} {b}"] = run_measured([NRCONVERT, unit, str(capture), "--block", str(b), *common],
                                                work / f"{name}-{unit}{b}.log")
    units["merge"] = run_measured([NRCONVERT, "merge", str(capture), *common], work / f"{name}-merge.log")
    metrics = json.loads(out.with_suffix(".report").joinpath("metrics.json").read_text())
    layout = json.loads(out.with_suffix(".work").joinpath("blocks.json").read_text())
    fields = [out.with_suffix(".work") / f"block_{b:02d}" / "field.pt" for b in range(1, blocks + 1)]
    return {"units": units, "train_seconds": [train_seconds(f) for f in fields],
            "steps": [_steps(f) for f in fields],
            "psnr_object": metrics["heldout"]["psnr_object"], "field_psnr": metrics.get("field_heldout_psnr"),
            "triangles": metrics["blocks"]["triangles"],
            "split": [{"own": b["own"], "cameras": len(b["cameras"])} for b in layout["blocks"]],
            "rays_estimate": split_rays(capture, out.with_suffix(".work") / "blocks.json")}


def split_rays(capture: Path, layout_path: Path) -> list[int]:
    """The split's own estimate of each block's rays (blocks.split balances these)."""
    from nrconvert.blocks.split import Layout, rays_through
    from nrconvert.capture.load import load_capture

    frames = load_capture(capture).train
    return [sum(rays_through(frames[i], b) for i in b.cameras) for b in Layout.load(layout_path).blocks]


def _steps(field: Path) -> int:
    from nrconvert.checkpoint import load_field_state

    history = load_field_state(field)["history"]
    return int(history[-1]["step"]) if history else 0


def seam_psnr(capture_dir: Path, work: Path, band: float) -> dict:
    """Band-around-the-borders vs rest PSNR of both runs, on the same (ground-truth) pixels."""
    from nrconvert.blocks.merge import combined, load_parts
    from nrconvert.blocks.split import Layout
    from nrconvert.capture.images import load_frame_image
    from nrconvert.capture.load import load_capture
    from nrconvert.config import make_config
    from nrconvert.metrics.evaluate import render_textured
    from nrconvert.pipeline import Run
    from nrconvert.render.raster import rasterize_view
    from nrconvert.bake.texture import interpolate
    from nrconvert.synth.ply import read_ply

    capture = load_capture(capture_dir)

    def scene(name: str):
        run = Run(capture_dir, work / f"{name}.glb", make_config("fast"))
        layout = Layout.load(run.workdir / "blocks.json")
        return layout, combined(load_parts(run, layout)[0])

    layout, blocks = scene("blocks")
    _, single = scene("single")
    gt_v, gt_f = read_ply(capture.gt_mesh_path)
    borders = np.array([b.own[1] for b in layout.blocks[:-1]])
    axis = np.asarray(layout.axis)
    err = {name: {"band": [0.0, 0], "rest": [0.0, 0]} for name in ("single", "blocks")}
    for frame in capture.test:
        rgb, alpha = load_frame_image(frame)
        frags = rasterize_view(frame, gt_v, gt_f)
        hit = frags.tri >= 0
        s = interpolate(gt_v, gt_f, frags) @ axis
        near = hit & (np.abs(s[..., None] - borders).min(-1) < band)
        obj = alpha >= 0.5
        target = rgb * alpha[..., None]
        for name, (mesh, tex) in (("single", single), ("blocks", blocks)):
            img, _ = render_textured(mesh, tex, frame)
            sq = ((img - target) ** 2).mean(-1)
            for part, mask in (("band", obj & near), ("rest", obj & ~near)):
                err[name][part][0] += float(sq[mask].sum())
                err[name][part][1] += int(mask.sum())
    out = {}
    for name, parts in err.items():
        out[name] = {part: {"psnr": round(10 * np.log10(1 / max(total / max(n, 1), 1e-12)), 2), "pixels": n}
                     for part, (total, n) in parts.items()}
    out["band_m"] = band
    out["borders"] = borders.tolist()
    return out


def upscaled(capture: Path, factor: int) -> Path:
    """The capture at `factor` times its resolution (Lanczos; intrinsics scaled), made once beside it.

    Memory per block only shows what blocks save once the photos' pixels outweigh a process's fixed
    cost (Python + torch + one batch's activations, ~0.6 GB): at 320x240 they do not, while real
    captures (1080p and up) are far past it. The same scene at 4x the pixels measures that regime
    in minutes instead of re-rendering it for an hour."""
    from PIL import Image

    out = capture.with_name(f"{capture.name}_x{factor}")
    if (out / "transforms_test.json").exists():
        return out
    tmp = out.with_name(out.name + ".partial")
    for split in ("train", "test"):
        doc = json.loads((capture / f"transforms_{split}.json").read_text())
        for key in ("w", "h", "fl_x", "fl_y", "cx", "cy"):
            doc[key] = doc[key] * factor
        for frame in doc["frames"]:
            src = capture / frame["file_path"]
            src = src if src.suffix else src.with_suffix(".png")
            dst = tmp / src.relative_to(capture)
            dst.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(src) as im:
                im.resize((im.width * factor, im.height * factor), Image.LANCZOS).save(dst)
        (tmp / f"transforms_{split}.json").write_text(json.dumps(doc, indent=1))
    (tmp / "gt_mesh.ply").write_bytes((capture / "gt_mesh.ply").read_bytes())
    tmp.rename(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--capture", type=Path, default=ROOT / "bench/.captures/street_standard_transparent")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--blocks", type=int, default=3)
    ap.add_argument("--band", type=float, default=0.3, help="half-width of the seam band, scene units")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra --set key=value for both runs")
    ap.add_argument("--work", type=Path, default=Path("/tmp/nrc_bench_blocks"))
    ap.add_argument("--skip-runs", action="store_true", help="only re-measure existing outputs in --work")
    ap.add_argument("--reuse-single", action="store_true",
                    help="rerun the blocks only; the single-field run (units, outputs in --work) comes from --out. "
                         "For changes that leave one field's path untouched (block budgets, say)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/blocks.json")
    ap.add_argument("--upscale", type=int, default=1, help="run on the capture at N x its resolution (see upscaled)")
    args = ap.parse_args()
    if args.upscale > 1:
        args.capture = upscaled(args.capture, args.upscale)
    args.work.mkdir(parents=True, exist_ok=True)
    sets = [x for s in args.sets for x in ("--set", s)]
    result = json.loads(args.out.read_text()) if args.skip_runs and args.out.exists() else {}
    if not args.skip_runs:
        result = {"date": time.strftime("%Y-%m-%d"), "capture": str(args.capture.name), "preset": args.preset,
                  "blocks": args.blocks, "sets": args.sets,
                  "machine": "2-core x86-64 VM, no GPU, torch CPU"}
        previous = json.loads(args.out.read_text()) if args.reuse_single else {}
        if previous:
            result["single"], result["single_from"] = previous["single"], previous.get("single_from", previous["date"])
        else:
            result["single"] = units_run(args.capture, args.work, "single", args.preset, sets, 1)
        result["blocks_run"] = units_run(args.capture, args.work, "blocks", args.preset, sets, args.blocks)
    result["seams"] = seam_psnr(args.capture, args.work, args.band)
    one = result["single"]["units"]
    single_peak = {u: one[f"{u} 1"]["peak_rss_mib"] for u in ("train", "bake")}
    units = result["blocks_run"]["units"]
    per_block = {u: [units[f"{u} {b}"]["peak_rss_mib"] for b in range(1, args.blocks + 1)] for u in ("train", "bake")}
    seams = result["seams"]["blocks"]
    result["summary"] = {
        "psnr_single": round(result["single"]["psnr_object"], 2),
        "psnr_blocks": round(result["blocks_run"]["psnr_object"], 2),
        "psnr_gap_db": round(result["single"]["psnr_object"] - result["blocks_run"]["psnr_object"], 2),
        "seam_gap_db": round(seams["rest"]["psnr"] - seams["band"]["psnr"], 2),
        "seam_gap_single_db": round(result["seams"]["single"]["rest"]["psnr"] - result["seams"]["single"]["band"]["psnr"], 2),
        "train_seconds_single": round(sum(result["single"]["train_seconds"]), 1),
        "train_seconds_blocks": round(sum(result["blocks_run"]["train_seconds"]), 1),
        "peak_rss_single_mib": single_peak,
        "peak_rss_per_block_mib": per_block,
        "peak_rss_ratio": {u: [round(p / single_peak[u], 3) for p in per_block[u]] for u in per_block},
        # the acceptance's number: a block's peak over all its units against the single run's peak
        "peak_rss_block_vs_single": [round(max(t, b) / max(single_peak.values()), 3)
                                     for t, b in zip(per_block["train"], per_block["bake"])],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["summary"], indent=1))


if __name__ == "__main__":
    main()
