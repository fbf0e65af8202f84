"""Where a GLB's captured look loses against the field it was baked from.

    python bench/texture_gap.py bench/.runs/suzanne_standard_transparent_balanced \
        [--capture bench/.captures/suzanne_standard_transparent] [--gt bench/.captures/...] \
        [--preset balanced] [--per-texel 8 4 1]

Reads a finished run (its WORK/field.pt, WORK/bake/lod0.npz and lod0_captured.png) and scores
held-out views on object pixels against a masked capture (`--gt`, the opaque capture's
transparent twin): the field; the textured LOD0 at 4x supersampling (as Blender's antialiased
render sees it); in the interior (2 px in from the silhouette, 1 sample per pixel) the field's
colour at the mesh's own surface point seen along the camera ray (view-dependent) and head-on
(what a texture can hold); and the photo fit of the field's texture at several photo pixels per
texel. Prints a table and saves bench/results/texture_gap_<run>.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
SS = 4  # supersampling of the textured renders


def _views(gt_capture, n: int):
    from scipy.ndimage import binary_erosion

    from nrconvert.capture.images import load_frame_image

    for f in gt_capture.test[:n]:
        rgb, a = load_frame_image(f, 1)
        obj = a >= 0.5
        yield f, rgb * a[..., None], obj, binary_erosion(obj, iterations=2)


def _textured(mesh, tex8: np.ndarray, views) -> tuple[float, float]:
    """(object, interior) PSNR of the textured mesh rendered at SS x and averaged down."""
    from nrconvert.metrics.evaluate import render_textured
    from nrconvert.metrics.image import psnr

    po, pi = [], []
    for f, gt, obj, inner in views:
        big = dataclasses.replace(f, width=f.width * SS, height=f.height * SS, fx=f.fx * SS, fy=f.fy * SS,
                                  cx=f.cx * SS, cy=f.cy * SS)
        img, hit = render_textured(mesh, tex8, big)
        h, w = obj.shape
        img = (img * hit[..., None]).reshape(h, SS, w, SS, 3).mean((1, 3))
        po.append(psnr(img[obj], gt[obj])); pi.append(psnr(img[inner], gt[inner]))
    return float(np.mean(po)), float(np.mean(pi))


def _field_colour(tf, o: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Colour of the first surface along short rays (un-premultiplied)."""
    from nrconvert.render.volume import render_chunked

    out = render_chunked(tf.field, tf.occupancy, torch.from_numpy(o.astype(np.float32)),
                         torch.from_numpy(d.astype(np.float32)), tf.box, tf.dt, max_distance=12 * tf.dt)
    return (out.rgb / out.opacity.clamp(min=1e-3)[:, None]).clamp(0, 1).numpy()


def _field_scores(tf, mesh, views) -> dict:
    from nrconvert.bake.texture import interpolate
    from nrconvert.metrics.image import psnr
    from nrconvert.render.raster import rasterize_view
    from nrconvert.render.rays import frame_rays
    from nrconvert.render.volume import render_chunked

    acc = {"field_object": [], "field_interior": [], "field_at_mesh_view": [], "field_at_mesh_head_on": []}
    for f, gt, obj, inner in views:
        o, d = frame_rays(f, 1)
        full = render_chunked(tf.field, tf.occupancy, torch.from_numpy(o.reshape(-1, 3)),
                              torch.from_numpy(d.reshape(-1, 3)), tf.box, tf.dt).rgb.numpy().reshape(gt.shape)
        acc["field_object"].append(psnr(full[obj], gt[obj])); acc["field_interior"].append(psnr(full[inner], gt[inner]))
        frags = rasterize_view(f, mesh.vertices, mesh.faces, 1)
        m = inner & (frags.tri >= 0)
        pos = interpolate(mesh.vertices, mesh.faces, frags)[m]
        n = interpolate(mesh.normals, mesh.faces, frags)[m]
        n /= np.linalg.norm(n, axis=1, keepdims=True)
        acc["field_at_mesh_view"].append(psnr(_field_colour(tf, pos - d[m] * 4 * tf.dt, d[m]), gt[m]))
        acc["field_at_mesh_head_on"].append(psnr(_field_colour(tf, pos + n * 4 * tf.dt, -n), gt[m]))
    return {k: float(np.mean(v)) for k, v in acc.items()}


def main() -> None:
    from PIL import Image

    from nrconvert.bake import texture as T
    from nrconvert.capture.load import load_capture
    from nrconvert.checkpoint import load_field_state, restore_field
    from nrconvert.config import make_config
    from nrconvert.mesh import Mesh
    from nrconvert.render.rays import Box
    from nrconvert.train.trainer import build_field

    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--capture", type=Path, default=HERE / ".captures" / "suzanne_standard_transparent",
                    help="the capture the run was made from (its photos are fitted)")
    ap.add_argument("--gt", type=Path, default=HERE / ".captures" / "suzanne_standard_transparent",
                    help="a masked capture with the same test cameras (the ground truth)")
    ap.add_argument("--preset", default="balanced")
    ap.add_argument("--per-texel", type=float, nargs="*", default=[8.0, 4.0, 1.0])
    ap.add_argument("--views", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(2)
    work = args.run / "scene.work"
    z = np.load(work / "bake" / "lod0.npz")
    mesh = Mesh(z["vertices"], z["faces"], z["normals"], z["uvs"])
    state = load_field_state(work / "field.pt")
    box = state["box"].numpy()
    tf = build_field(make_config(args.preset), Box(box[0], box[1]), bool(state["masked"]), None)
    restore_field(tf, state)
    views = list(_views(load_capture(args.gt), args.views))
    res = _field_scores(tf, mesh, views)
    shipped = np.asarray(Image.open(work / "bake" / "lod0_captured.png").convert("RGB"))
    res["shipped_object"], res["shipped_interior"] = _textured(mesh, shipped, views)
    tex, hit = T.bake_from_field(tf, mesh, shipped.shape[0])
    tex = T.pad_texture(tex, hit)
    res["field_texture_object"], _ = _textured(mesh, T.to_uint8_srgb(tex), views)
    frames = load_capture(args.capture).train
    for per in args.per_texel:
        fit = T.pad_texture(T.fit_to_photos(tex, hit, mesh, frames, observations_per_texel=per), hit)
        res[f"fit_{per:g}_px_per_texel_object"], _ = _textured(mesh, T.to_uint8_srgb(fit), views)
    for k, v in res.items():
        print(f"{k:36s} {v:6.2f} dB")
    out = HERE / "results" / f"texture_gap_{args.run.name}.json"
    out.write_text(json.dumps({"run": str(args.run), **{k: round(v, 3) for k, v in res.items()}}, indent=1))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
