"""Neural material quality: held-out PSNR of the neural material against the diffuse-only texture.

    python bench/neural.py --object torus_knot --preset balanced
    python bench/neural.py --object suzanne_specular --preset balanced --resume
    python bench/neural.py --glb PATH --capture DIR          # an existing GLB

Converts the synth capture (as bench/relight.py does), then renders every LOD from the held-out
`test` cameras with the reference decoders (`nrconvert.render.asset_view`, the same rasterizer
for both looks): the neural material, and the captured texture alone (the unlit fallback, i.e.
what a texture without view dependence can do). PSNR on object pixels (photo alpha >= 0.5, both
over black) and over the whole frame (the NeRF benchmarks' convention), averaged over the views. Also records the feature textures' bytes in the GLB and the
decoder's FLOP per pixel. Writes bench/results/neural_<capture>_<preset>.json.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from relight import add_common_args, header, prepare, result_name, save

from nrconvert.capture.images import load_frame_image
from nrconvert.capture.transforms import load_cameras
from nrconvert.export.reader import lod_primitives, read_glb
from nrconvert.metrics.image import psnr
from nrconvert.render.asset_view import render_primitive, to_asset_frame


def feature_bytes(glb: Path) -> list[int]:
    """PNG bytes of each LOD's two feature textures, as stored in the GLB."""
    g = read_glb(glb)
    doc, out = g.doc, []
    for prim in lod_primitives(g):
        ext = doc["materials"][prim.captured_material]["extensions"].get("NRC_neural_material")
        views = [doc["images"][doc["textures"][t["index"]]["source"]]["bufferView"] for t in ext["featureTextures"]]
        out.append(sum(doc["bufferViews"][v]["byteLength"] for v in views))
    return out


def evaluate(glb: Path, capture: Path) -> dict:
    g = read_glb(glb)
    up = g.doc["asset"]["extras"]["nrconvert"].get("up_axis", "z")
    frames = load_cameras(capture / "transforms_test.json")
    sizes = feature_bytes(glb)
    lods = []
    for k, prim in enumerate(lod_primitives(g)):
        scores = {"neural": [], "captured": [], "neural_full": [], "captured_full": []}
        for f in frames:
            rgb, alpha = load_frame_image(f)
            obj = alpha >= 0.5
            gt = rgb * alpha[..., None]
            for look in ("neural", "captured"):
                img, _ = render_primitive(prim, to_asset_frame(f, up), look)
                scores[look].append(psnr(img[obj], gt[obj]))
                scores[f"{look}_full"].append(psnr(img, gt))  # whole frame over black, NeRF-style
        row = {"lod": k, "triangles": len(prim.faces), "feature_size": list(prim.neural.features.shape[:2]),
               "feature_bytes": sizes[k], "flops_per_pixel": prim.neural.flops_per_pixel(),
               **{f"psnr_{look}": round(float(np.mean(v)), 2) for look, v in scores.items()}}
        row["gain_db"] = round(row["psnr_neural"] - row["psnr_captured"], 2)
        lods.append(row)
        print(json.dumps(row), flush=True)
    return {"views": len(frames), "lods": lods}


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(ap)
    args = ap.parse_args()
    capture, glb, facts = prepare(args)
    record = header(args, capture, glb, facts)
    record.update(evaluate(glb, capture))
    save(record, result_name("neural", record, capture, glb))


if __name__ == "__main__":
    main()
