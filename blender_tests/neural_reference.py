"""Reference renders of a GLB's LOD0 neural material, for blender_tests/test_addon_neural.py.

Runs as a script with the venv's python in a subprocess: nrconvert.render imports torch, which
must never load in the pytest process that holds bpy.

    python neural_reference.py GLB CAMERAS_JSON OUT_NPZ

CAMERAS_JSON is a list of {"c2w": 4x4 (capture frame, OpenGL convention), "fx", "fy", "cx", "cy",
"width", "height", "up_axis"}. For LOD k and camera i the .npz holds `img{k}_{i}` (H, W, 3) sRGB
and `hit{k}_{i}` (H, W) from `render_primitive(prim, to_asset_frame(frame, up_axis), "neural")`,
plus the covered pixels' `uv{k}_{i}` (N, 2), `dirs{k}_{i}` (N, 3, camera -> surface in the
glTF node frame) and `normals{k}_{i}` (N, 3, interpolated NORMAL), so the test can decode the same pixels under wrong view conventions and show
that its bar tells them apart.
"""
from __future__ import annotations

import json
import sys
from itertools import product
from pathlib import Path

import numpy as np
from nrconvert.capture.model import Frame
from nrconvert.export.neural import decode
from nrconvert.export.reader import lod_primitives, read_glb
from nrconvert.render.asset_view import render_primitive, to_asset_frame
from nrconvert.render.raster import rasterize_view


def main(glb: str, cameras_json: str, out: str) -> None:
    arrays = {}
    cameras = json.loads(Path(cameras_json).read_text())
    for (k, prim), (i, cam) in product(enumerate(lod_primitives(read_glb(Path(glb)))), enumerate(cameras)):
        if prim.neural is None:
            continue
        frame = Frame(Path(f"camera_{i}.png"), np.asarray(cam["c2w"], np.float64), cam["fx"], cam["fy"],
                      cam["cx"], cam["cy"], cam["width"], cam["height"])
        frame = to_asset_frame(frame, cam["up_axis"])
        img, hit = render_primitive(prim, frame, "neural")
        frags = rasterize_view(frame, prim.positions, prim.faces)  # what render_primitive interpolates
        covered = frags.tri >= 0
        tri, bary = prim.faces[frags.tri[covered]], frags.bary[covered][..., None]
        uv = (prim.uvs[tri] * bary).sum(1)
        dirs = (prim.positions[tri] * bary).sum(1) - frame.c2w[:3, 3]
        normals = (prim.normals[tri] * bary).sum(1)
        assert np.array_equal(covered, hit)
        assert np.abs(decode(prim.neural, uv, dirs, normals) - img[hit]).max() < 1e-6
        arrays.update({f"img{k}_{i}": img, f"hit{k}_{i}": hit, f"uv{k}_{i}": uv, f"dirs{k}_{i}": dirs,
                       f"normals{k}_{i}": normals})
    np.savez(out, **arrays)


if __name__ == "__main__":
    main(*sys.argv[1:4])
