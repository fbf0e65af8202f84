"""Size of 1024² feature textures: distil LOD0 of a converted capture at a forced 1024² and
measure the two PNGs as the GLB would store them (the default sizing picks less when the photos
cannot support 1024²; this measures the issue's "1024² atlas ≤ 4 MB" case directly), with the
pipeline's own supervision (`neural_chain.lod_samples`: photo footprints and field renders),
encoding and environment.

    python bench/neural_1024.py --capture bench/.captures/torus_knot_standard_transparent \\
        --work /tmp/nm/torus.work [--steps 1500]

Needs the conversion's work folder (trained field + bake). Prints and saves
bench/results/neural_1024_<capture>.json.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from nrconvert.bake import neural as nb
from nrconvert.bake.neural_chain import lod_samples
from nrconvert.bake.store import load_lods
from nrconvert.capture.load import load_capture
from nrconvert.config import Config
from nrconvert.export.frames import capture_to_gltf_rotation
from nrconvert.export.materials import encode_png
from nrconvert.pipeline import Run
from nrconvert.stages import train_stage

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--capture", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True, help="the conversion's work folder")
    ap.add_argument("--steps", type=int, default=1500)
    args = ap.parse_args()
    cap = load_capture(args.capture)
    cfg = Config(**json.loads((args.work / "settings.json").read_text()))  # the run's, so nothing retrains
    tf = train_stage(Run(cap.root, args.work.with_suffix(".glb"), cfg, workdir=args.work, resume=True), cap)
    mesh = load_lods(args.work / "bake")[0][0].mesh
    rot = capture_to_gltf_rotation(cap.up_axis)
    extra = nb.between_cameras(cap.train, cfg.neural_field_views, cfg.seed)
    renders = [(f, nb.field_image(tf, mesh, f)) for f in extra]
    samples, pixels = lod_samples(mesh, cap.train, renders, rot, cfg)  # the pipeline's supervision
    n = len(samples.uv) + (0 if pixels is None else pixels.covered())
    t = time.time()
    mat = nb.distill(samples, 1024, args.steps, pixels=pixels, seed=cfg.seed, encoding=cfg.neural_encoding,
                     env_width=nb.environment_size(n, cfg.neural_environment)).material
    a, b = mat.textures()
    res = {"date": time.strftime("%Y-%m-%d"), "capture": str(args.capture), "size": 1024, "steps": args.steps,
           "seconds": round(time.time() - t, 1), "png_bytes": len(encode_png(a)) + len(encode_png(b)),
           "raw_bytes": int(mat.features.nbytes)}
    print(json.dumps(res))
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / f"neural_1024_{args.capture.name}.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
