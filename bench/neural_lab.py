"""Neural-material lab: re-distil LOD0 of an existing conversion with other settings, side by side.

    python bench/neural_lab.py --run RUN/scene.glb --capture CAP \\
        --variant default --variant size=256 --variant field_views=120 --variant tv=0.03

RUN is a finished conversion (its work folder is read, not written: every stage is resumed).
Each variant distils LOD0's features and decoder with the pipeline's own code
(`bake.neural.view_samples`, `between_cameras`, `field_image`, `distill`), changing only what it
names: `size` (feature side; default the sample count's choice, `feature_size`), `tv` (total
variation weight), `field_views` (field renders between the photos), `steps`, `batch`, `hidden`
(the MLP's widths, `12x12`), `env` (a learnt environment texture of that width that the MLP
modulates, with the `nv` encoding: `--set neural_environment=W`, format 1.1) and `footprint`
(photo pixels fitted as the mean of that many sub-samples per side, `bake.footprint`; 1: pixel
centres; default the run's `neural_footprint`). Scores are PSNR at the held-out cameras' pixel
centres where the photo and the mesh agree on the object (the samples `view_samples` takes),
against the training samples' own PSNR: the gap between the two is how well the decoder carries
the look to views it never saw; and `heldout_aa`, the held-out object pixels the mesh touches,
anti-aliased (4 x 4 sub-samples, premultiplied), as bench/neural.py renders them. `--teacher` also scores the
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
          "hidden": lambda t: tuple(int(h) for h in t.split("x")), "env": int, "footprint": int}


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
    from nrconvert.bake.footprint import pixel_samples
    from nrconvert.bake.neural_chain import lod_samples
    from nrconvert.bake.texture import texel_fragments

    enc, fv = cfg.neural_encoding, variant.get("field_views", cfg.neural_field_views)
    foot = variant.get("footprint", cfg.neural_footprint)
    if fv not in cache:
        cache[fv] = [(f, N.field_image(tf, mesh, f, cfg.downscale))
                     for f in N.between_cameras(capture.train, fv, cfg.seed)]
    if (fv, foot) not in cache:
        cache[fv, foot] = lod_samples(mesh, capture.train, cache[fv], rotation, cfg.replace(neural_footprint=foot))
    samples, pixels = cache[fv, foot]
    if "tests" not in cache:
        cache["tests"] = [(N.view_samples(mesh, f, rotation, cfg.downscale, encoding=enc),
                           pixel_samples(mesh, f, rotation, cfg.downscale, enc, 4)) for f in capture.test]
    tests = cache["tests"]
    n = len(samples.uv) + (0 if pixels is None else pixels.covered())
    coverage = float((texel_fragments(mesh, 256).tri >= 0).mean())
    size = variant.get("size") or N.feature_size(n, coverage, 1024)
    t = time.time()
    common = dict(batch=variant.get("batch", 16384), tv=variant.get("tv", 1e-2), seed=cfg.seed,
                  hidden=variant.get("hidden"))  # None: the pipeline's (bake.neural.default_hidden)
    steps = variant.get("steps", cfg.neural_steps)
    env = variant.get("env", cfg.neural_environment if enc != "sh2_reflected_nv" else 0)
    if env and enc == "sh2_reflected_nv":  # nv reads (mirror, n.v): the first 4 columns of its samples
        samples, pixels, tests = _nv(samples), _nv(pixels), [(_nv(a), _nv(b)) for a, b in tests]
        enc = "nv"
    common["env_width"] = N.environment_size(n, env)
    distilled = N.distill(samples, size, steps, pixels=pixels, encoding=enc, **common)
    dec, flops = distilled.decoder.eval(), distilled.material.flops_per_pixel()
    train = pixels if pixels is not None else samples
    pick = np.random.default_rng(0).choice(len(train.rgb), min(200_000, len(train.rgb)), replace=False)
    return {"variant": variant, "feature_size": size, "samples": n, "flops_per_pixel": flops,
            "heldout_centres": round(float(np.mean([_score(dec, a) for a, _ in tests])), 2),
            "heldout_aa": round(float(np.mean([_score(dec, b) for _, b in tests])), 2),
            "train": round(float(_score(dec, _take(train, pick))), 2), "seconds": round(time.time() - t, 1)}


def _score(dec, s) -> float:
    """PSNR of the decoder on samples (pixel centres) or pixels (their footprints' mean)."""
    from nrconvert.bake.footprint import pixel_colour
    from nrconvert.metrics.image import psnr

    with torch.no_grad():
        if hasattr(s, "hit"):
            return psnr(pixel_colour(dec, *(torch.from_numpy(x) for x in (s.uv, s.view, s.hit))).numpy(), s.rgb)
        return psnr(dec(torch.from_numpy(s.uv), torch.from_numpy(s.view)).numpy(), s.rgb)


def _take(s, idx):
    return type(s)(*(getattr(s, f)[idx] for f in s.__dataclass_fields__))


def _nv(s):
    """`nv` samples (or pixels) from `sh2_reflected_nv` ones: the first 4 columns of their views."""
    if s is None:
        return None
    return type(s)(**{f: np.ascontiguousarray(getattr(s, f)[..., :4]) if f == "view" else getattr(s, f)
                      for f in s.__dataclass_fields__})


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
