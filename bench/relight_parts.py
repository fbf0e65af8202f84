"""Per-part PSNR of kept relight renders on the mixed-materials capture.

    python bench/relight.py --glb RUN/scene.glb --capture CAP --keep      # renders_pbr/ beside the GLB
    python bench/relight_parts.py --capture CAP --renders RUN/renders_pbr

Why: the scene's one PSNR mixes a rough sphere, a glossy cube and a gold torus, and each fails
for its own reason (the torus's colour, the cube's reflections); a change is judged by which
part it moved. Pixels are told apart by rasterizing the capture's gt_mesh.ply with each part's
label (bench/relight_oracle.py's), object pixels and premultiplication as bench/relight.py
(nrconvert.metrics.blender). Prints each part's PSNR (mean over views, as the bench's number)
and its share of the squared error.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--capture", type=Path, required=True)
    ap.add_argument("--renders", type=Path, required=True)
    ap.add_argument("--split", default="test_relight")
    args = ap.parse_args()
    from nrconvert.capture.load import load_capture
    from nrconvert.render.raster import rasterize_view
    from nrconvert.synth.ply import read_ply
    from relight_oracle import PARTS, part_labels

    verts, label = part_labels(args.capture)
    _, faces = read_ply(args.capture / "gt_mesh.ply")
    face_part = label[faces[:, 0]]
    names = list(PARTS.values())
    capture = load_capture(args.capture)
    psnrs = {n: [] for n in names}
    sq = {n: 0.0 for n in names}
    count = {n: 0 for n in names}
    for f in capture.test:
        name = f.image_path.name
        gt = np.asarray(Image.open(args.capture / args.split / name).convert("RGBA"), np.float32) / 255
        out = np.asarray(Image.open(args.renders / name).convert("RGBA"), np.float32) / 255
        g, r = gt[..., :3] * gt[..., 3:], out[..., :3] * out[..., 3:]
        tri = rasterize_view(f, verts, faces).tri
        for k, n in enumerate(names):
            m = (gt[..., 3] >= 0.5) & (tri >= 0) & (face_part[np.maximum(tri, 0)] == k)
            if m.any():
                err = ((r[m] - g[m]) ** 2)
                psnrs[n].append(-10 * np.log10(max(err.mean(), 1e-10)))
                sq[n] += float(err.sum())
                count[n] += int(m.sum())
    total = sum(sq.values())
    out = {n: {"psnr": round(float(np.mean(psnrs[n])), 2), "error_share": round(sq[n] / total, 3),
               "pixel_share": round(count[n] / sum(count.values()), 3)} for n in names}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
