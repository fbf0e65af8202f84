"""Neural-material lab: re-distil LOD0 of an existing conversion with other settings, side by side.

    python bench/neural_lab.py --run RUN/scene.glb --capture CAP \\
        --variant default --variant size=256 --variant field_views=120 --variant tv=0.03

RUN is a finished conversion (its work folder is read, not written: every stage is resumed).
Each variant distils LOD0's features and decoder with the pipeline's own code
(`bake.neural.view_samples`, `between_cameras`, `field_image`, `distill`), changing only what it
names: `size` (feature side; default the sample count's choice, `feature_size`), `tv` (total
variation weight), `field_views` (field renders between the photos), `steps`, `batch`, `hidden`
(the MLP's widths, `12x12`) and `env` (a learnt environment texture of that width that the MLP
modulates, with the `nv` encoding: `--set neural_environment=W`, format 1.1). Scores
are PSNR at the held-out cameras' pixel centres where the photo and the mesh agree on the object
(the samples `view_samples` takes), against the training samples' own PSNR: the gap between the
two is how well the decoder carries the look to views it never saw. `--teacher` also scores the
field's own colour at the same held-out samples (rays marched from just in front of LOD0's
surface, `field_image`): the ceiling distillation of this field works under. This is the quick loop
behind bench/RESULTS.md's lab numbers; the end-to-end score of a GLB is bench/neural.py's.
Saves bench/results/neural_lab_<capture>_<run folder>.json.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from relight import save

FIELDS = {"size": int, "tv": float, "field_views": int, "steps": int, "batch": int,
          "hidden": lambda t: tuple(int(h) for h in t.split("x")), "env": int}


def parse_variant(text: str) -> dict:
    """'size=256,tv=0.03' -> {'size': 256, 'tv': 0.03}; 'default' -> {}."""
    if text == "default":
        return {}
    out = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        if key not in FIELDS:
            raise SystemExit(f"unknown variant setting {key!r}: one of {', '.join(FIELDS)}")
        out[key] = FIELDS[key](value)
    return out


def load_run(run_glb: Path, capture_dir: Path):
    """(config, capture, trained field, LOD0 mesh) of a finished conversion, every stage resumed."""
    from nrconvert.capture.load import load_capture
    from nrconvert.config import Config
    from nrconvert.pipeline import Run
    from nrconvert.stages import bake_stage, extract_stage, train_stage

    work = run_glb.with_suffix(".work")
    cfg = Config(**json.loads((work / "settings.json").read_text()))
    run = Run(capture_dir, run_glb, cfg, resume=True)
    capture = load_capture(capture_dir, workdir=run.workdir, resume=True)
    tf = train_stage(run, capture)
    mesh = extract_stage(run, capture, tf)
    return cfg, capture, tf, bake_stage(run, capture, tf, mesh).lods[0].mesh


def measure(cfg, capture, tf, mesh, variant: dict, rotation: np.ndarray, cache: dict) -> dict:
    from nrconvert.bake import neural as N
    from nrconvert.bake.texture import texel_fragments
    from nrconvert.metrics.image import psnr

    enc, fv = cfg.neural_encoding, variant.get("field_views", cfg.neural_field_views)
    if fv not in cache:
        extra = N.between_cameras(capture.train, fv, cfg.seed)
        parts = [N.view_samples(mesh, f, rotation, cfg.downscale, encoding=enc) for f in capture.train]
        parts += [N.view_samples(mesh, f, rotation, cfg.downscale, image=N.field_image(tf, mesh, f, cfg.downscale),
                                 encoding=enc) for f in extra]
        cache[fv] = N.concat(parts)
    samples = cache[fv]
    if "tests" not in cache:
        cache["tests"] = [N.view_samples(mesh, f, rotation, cfg.downscale, encoding=enc) for f in capture.test]
    coverage = float((texel_fragments(mesh, 256).tri >= 0).mean())
    size = variant.get("size") or N.feature_size(len(samples.uv), coverage, 1024)
    t = time.time()
    common = dict(batch=variant.get("batch", 16384), tv=variant.get("tv", 1e-2), seed=cfg.seed,
                  hidden=variant.get("hidden"))  # None: the pipeline's (bake.neural.default_hidden)
    steps = variant.get("steps", cfg.neural_steps)
    tests = cache["tests"]
    if variant.get("env"):  # nv reads (mirror, n.v): the first 4 columns of sh2_reflected_nv's samples
        samples, tests = (_nv(s) for s in (samples, tests)) if enc == "sh2_reflected_nv" else (samples, tests)
        enc, common["env_width"] = "nv", variant["env"]
    distilled = N.distill(samples, size, steps, encoding=enc, **common)
    dec, flops = distilled.decoder.eval(), distilled.material.flops_per_pixel()

    def score(s) -> float:
        with torch.no_grad():
            return psnr(dec(torch.from_numpy(s.uv), torch.from_numpy(s.view)).numpy(), s.rgb)

    pick = np.random.default_rng(0).choice(len(samples.uv), min(200_000, len(samples.uv)), replace=False)
    train = N.ViewSamples(samples.uv[pick], samples.view[pick], samples.rgb[pick])
    return {"variant": variant, "feature_size": size, "samples": len(samples.uv), "flops_per_pixel": flops,
            "heldout_centres": round(float(np.mean([score(s) for s in tests])), 2),
            "train": round(float(score(train)), 2), "seconds": round(time.time() - t, 1)}


def _nv(s):
    """`nv` samples from `sh2_reflected_nv` ones (a list of them, or one)."""
    from nrconvert.bake import neural as N

    if isinstance(s, list):
        return [_nv(x) for x in s]
    return N.ViewSamples(s.uv, np.ascontiguousarray(s.view[:, :4]), s.rgb)


def teacher(cfg, capture, tf, mesh) -> dict:
    """PSNR of the field's colour at the held-out pixels `view_samples` scores (mean over views, pooled)."""
    from nrconvert.bake import neural as N
    from nrconvert.capture.images import load_frame_image
    from nrconvert.metrics.image import psnr
    from nrconvert.render.raster import photo_object_pixels, rasterize_view

    per_view, err, count = [], 0.0, 0
    for f in capture.test:
        rgb, alpha = load_frame_image(f, cfg.downscale)
        hit = photo_object_pixels(rasterize_view(f, mesh.vertices, mesh.faces, cfg.downscale,
                                                 cull_backfaces=True).tri, alpha)
        field = N.field_image(tf, mesh, f, cfg.downscale)[0][hit]
        per_view.append(psnr(field, rgb[hit]))
        err, count = err + float(((field - rgb[hit]) ** 2).sum()), count + field.size
    return {"heldout_centres": round(float(np.mean(per_view)), 2),
            "pooled": round(float(-10 * np.log10(err / max(count, 1))), 2), "views": len(per_view)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="a finished conversion's GLB (its .work is read)")
    ap.add_argument("--capture", type=Path, required=True)
    ap.add_argument("--variant", action="append", default=[], help="'default' or KEY=VALUE[,KEY=VALUE]")
    ap.add_argument("--teacher", action="store_true", help="also score the field itself at the same samples")
    args = ap.parse_args()
    from nrconvert.export.frames import capture_to_gltf_rotation

    torch.set_num_threads(2)
    cfg, capture, tf, mesh = load_run(args.run.resolve(), args.capture.resolve())
    rotation, cache, rows = capture_to_gltf_rotation(capture.up_axis), {}, []
    for text in args.variant or ["default"]:
        rows.append({"name": text, **measure(cfg, capture, tf, mesh, parse_variant(text), rotation, cache)})
        print(json.dumps(rows[-1]), flush=True)
    extra = {}
    if args.teacher:
        extra["teacher"] = teacher(cfg, capture, tf, mesh)
        print(json.dumps({"teacher": extra["teacher"]}), flush=True)
    save({"date": time.strftime("%Y-%m-%d"), "run": str(args.run), "capture": str(args.capture),
          "encoding": cfg.neural_encoding, "results": rows, **extra},
         f"neural_lab_{args.capture.resolve().name}_{args.run.resolve().parent.name}")


if __name__ == "__main__":
    main()
