"""Map-baking benchmark: LOD chain, per-LOD unwrap, normal + AO maps against an analytic surface.

LOD0 is the marching-cubes mesh (~200k triangles) of an analytic bumpy sphere, whose exact SDF
and normals stand in for the trained field (`bake.surface.Surface`), so quality is measured
against ground truth: for each LOD, the angle between the true surface normal and the normal a
viewer shades with, with and without the baked normal map.

    python bench/bake_maps.py               # 200k triangles, LOD0 maps at 2048²
    python bench/bake_maps.py --quick       # 20k triangles at 512²: checks the script, not the speed

Writes bench/results/bake_maps-<date>[-quick].json (+ 512² previews of LOD0's maps) and prints
the step times. The budget this tracks: LOD0's unwrap + normal + AO + padding at 2048² within 60 s
on the 2-core VM (the unwrap is part of it: no map exists without an atlas).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage.measure import marching_cubes

from nrconvert.bake.ao import bake_ao
from nrconvert.bake.lod import lod_chain, lod_texture_sizes, screen_coverages
from nrconvert.bake.normalmap import bake_normal_map, decode
from nrconvert.bake.surface import Surface, project
from nrconvert.bake.tangents import tangent_frames
from nrconvert.bake.texture import interpolate, pad_texture, texel_fragments
from nrconvert.bake.uv import unwrap
from nrconvert.kernels import backend
from nrconvert.mesh import Mesh, vertex_normals

RESULTS = Path(__file__).resolve().parent / "results"
BUMPS = ((0.15, 7.0), (0.012, 29.0))  # (amplitude, frequency): broad lobes (AO) + fine ripples (normals)


def _field(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """f = |p| - 0.8 - sum a sin(kx) sin(ky) sin(kz) and its gradient."""
    r = np.linalg.norm(p, axis=-1, keepdims=True)
    f, grad = r[..., 0] - 0.8, p / np.maximum(r, 1e-12)
    for a, k in BUMPS:
        s, c = np.sin(k * p), np.cos(k * p)
        f = f - a * s.prod(-1)
        grad = grad - a * k * np.stack([c[..., 0] * s[..., 1] * s[..., 2], s[..., 0] * c[..., 1] * s[..., 2],
                                        s[..., 0] * s[..., 1] * c[..., 2]], -1)
    return f, grad


def analytic_surface() -> Surface:
    """f / |grad f| as the distance (first-order exact near the surface, so Newton lands in 2-3 steps)."""
    def sdf(p):
        f, g = _field(p)
        return (f / np.linalg.norm(g, axis=-1)).astype(np.float32)

    def normal(p):
        g = _field(p)[1]
        return (g / np.linalg.norm(g, axis=-1, keepdims=True)).astype(np.float32)

    return Surface(sdf, normal)


def lod0_mesh(triangles: int) -> Mesh:
    """Marching cubes of the field, at the grid resolution that gives about `triangles` (the count
    grows with res², so one coarse pass calibrates it)."""
    res = int(round(64 * (triangles / _marching(64).n_triangles) ** 0.5))
    mesh = _marching(res)
    mesh.normals = vertex_normals(mesh.vertices, mesh.faces)
    return mesh


def _marching(res: int) -> Mesh:
    g = (np.arange(res) + 0.5) / res * 2.0 - 1.0
    f = np.stack([_field(np.stack(np.meshgrid(g, [y], g, indexing="ij"), -1)[:, 0])[0] for y in g], 1)
    v, faces, _, _ = marching_cubes(f, 0.0)
    return Mesh(((v + 0.5) / res * 2.0 - 1.0).astype(np.float32), faces.astype(np.int64))


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def normal_errors(mesh: Mesh, rgb: np.ndarray, surface: Surface) -> dict:
    """Degrees between the true normal and what a viewer shades with, with and without the map."""
    frags = texel_fragments(mesh, rgb.shape[0])
    hit = frags.tri >= 0
    pos, nrm, tan = (interpolate(a, mesh.faces, frags)[hit] for a in (mesh.vertices, mesh.normals, mesh.tangents))
    t, b, n = tangent_frames(nrm, tan)
    v = decode(rgb[hit])
    mapped = v[:, :1] * t + v[:, 1:2] * b + v[:, 2:3] * n
    mapped /= np.linalg.norm(mapped, axis=1, keepdims=True)
    truth = project(surface, pos)[1]

    def stats(x):
        deg = np.degrees(np.arccos(np.clip((x * truth).sum(1), -1, 1)))
        return {"median": round(float(np.median(deg)), 2), "p95": round(float(np.percentile(deg, 95)), 2)}

    return {"with_map_deg": stats(mapped), "mesh_normal_deg": stats(n)}


def bake_lod(i: int, lod: Mesh, size: int, lod0: Mesh, surface: Surface, directions: int) -> tuple[dict, tuple]:
    uv_mesh, t_unwrap = timed(unwrap, lod, size)
    (nmap, covered), t_normal = timed(bake_normal_map, uv_mesh, size, surface)
    ao, t_ao = timed(bake_ao, uv_mesh, size, lod0, directions, surface)
    _, t_pad = timed(pad_texture, nmap, covered)  # already inside both bakers; shown on its own
    row = {"lod": i, "triangles": lod.n_triangles, "texture": size, "coverage": round(float(covered.mean()), 3),
           "unwrap_s": round(t_unwrap, 2), "normal_s": round(t_normal, 2), "ao_s": round(t_ao, 2),
           "pad_s (in both)": round(t_pad, 2), "maps_s": round(t_normal + t_ao, 2),
           "ao_mean": round(float(ao[covered].mean()), 3), "ao_p01": round(float(np.percentile(ao[covered], 1)), 3),
           **normal_errors(uv_mesh, nmap, surface)}
    print(f"LOD{i}: {row}", flush=True)
    return row, (nmap, ao)


def machine() -> dict:
    cpu = [ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")]
    return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "backend": backend(torch.device("cpu")),
            "cpu": cpu[0].split(":", 1)[1].strip() if cpu else platform.processor(),
            "load_avg_before": [round(x, 2) for x in os.getloadavg()]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--triangles", type=int, default=200_000)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--directions", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="20k triangles at 512²")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.quick:
        args.triangles, args.size = 20_000, 512
    torch.set_num_threads(args.threads)
    info = machine()
    surface = analytic_surface()
    lod0, t_mc = timed(lod0_mesh, args.triangles)
    chain, t_lod = timed(lod_chain, lod0)
    sizes = lod_texture_sizes(args.size, len(chain))
    print(f"LOD0 {lod0.n_triangles} triangles (marching cubes {t_mc:.1f} s); chain {[m.n_triangles for m in chain]} "
          f"in {t_lod:.2f} s; textures {sizes}", flush=True)
    rows, maps = [], None
    for i, (lod, size) in enumerate(zip(chain, sizes)):
        row, baked = bake_lod(i, lod, size, lod0, surface, args.directions)
        rows.append(row)
        maps = maps or baked
    info["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    stamp = dt.date.today().isoformat()
    name = f"bake_maps-{stamp}" + ("-quick" if args.quick else "")
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"date": stamp, "machine": info, "command": "python bench/bake_maps.py" + (" --quick" if args.quick else ""),
              "config": {"triangles": lod0.n_triangles, "size": args.size, "directions": args.directions},
              "lod_chain_s": round(t_lod, 2), "screen_coverage": [round(c, 4) for c in screen_coverages(chain)],
              "lods": rows}
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2))
    Image.fromarray(maps[0]).resize((512, 512), Image.LANCZOS).save(args.out / f"{name}-normal.png")
    Image.fromarray((maps[1] * 255 + 0.5).astype(np.uint8)).resize((512, 512), Image.LANCZOS).save(
        args.out / f"{name}-ao.png")
    print(f"LOD0 unwrap + maps at {args.size}²: {rows[0]['unwrap_s'] + rows[0]['maps_s']:.1f} s "
          f"(unwrap {rows[0]['unwrap_s']} + maps {rows[0]['maps_s']}: normal {rows[0]['normal_s']} + AO {rows[0]['ao_s']}); "
          f"load average {info['load_avg_before']} -> {info['load_avg_after']}; wrote {args.out / name}.json")


if __name__ == "__main__":
    main()
