"""Re-bake a run with other PBR fit weights or another fit seed, the field untouched.

    python bench/rebake_pbr.py --glb RUN/scene.glb --capture CAP [--seed 7] [albedo_smooth_first=0.3 ...]
    python bench/relight.py --glb RUN/scene.glb --capture CAP --keep

Why: the light/material fit is a few minutes of a bake and deterministic for a seed, while a new
field is ten; tuning `bake.pbr.PbrWeights` is done on one stored field, and its spread across fit
seeds is what a change must beat. RUN is changed in place (copy it first). On the mixed-materials
capture each part's mean fitted material is printed (parts as bench/relight_oracle.py).
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--glb", type=Path, required=True)
    ap.add_argument("--capture", type=Path, required=True)
    ap.add_argument("--seed", type=int, help="fit seed (default: the run's)")
    ap.add_argument("weights", nargs="*", help="PbrWeights fields, NAME=VALUE")
    args = ap.parse_args()
    from nrconvert.bake import chain, pbr
    from nrconvert.config import make_config
    from nrconvert.pipeline import Run, convert
    from relight_oracle import reporting, stored_settings

    weights = pbr.PbrWeights(**{k: float(v) for k, v in (kv.split("=", 1) for kv in args.weights)})
    print(dataclasses.asdict(weights))

    def fit(*a, **k):
        if args.seed is not None:
            k["seed"] = args.seed
        return pbr.fit_pbr(*a, weights=weights, **k)

    chain.fit_pbr = fit
    if (args.capture / "gt_mesh.ply").exists() and "materials" in args.capture.name:
        chain.bake_material_maps = reporting(chain.bake_material_maps, args.capture)
    convert(Run(args.capture, args.glb, make_config(**stored_settings(args.glb)), resume=True, redo="bake"))


if __name__ == "__main__":
    main()
