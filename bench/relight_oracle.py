"""Diagnostic: how well could the mixed-materials GLB relight if the material fit were perfect?

    python bench/relight_oracle.py --capture bench/.captures/materials_standard_transparent \
        --glb RUN/scene.glb          # RUN from a `balanced` conversion of that capture
    python bench/relight.py --glb RUN/scene.glb --capture bench/.captures/materials_standard_transparent
    python bench/relight_oracle.py --capture ... --glb RUN2/scene.glb --light   # the true light instead

Re-bakes RUN's GLB in place (`--redo bake`, no neural stage; every other setting read back from
RUN's work folder, so the stored field is reused and never retrained) with each part's ground-truth material on our own mesh: base colour, roughness and
metallic of the glossy cube and the gold torus, the sphere's roughness and metallic (its albedo
is a painted texture, kept from the fit). What is left between this and ground truth is the
geometry's (and the sphere albedo's) share of the error. Parts are told apart by the connected
components of the capture's gt_mesh.ply, known by their vertex counts (synth/_blender_objects.py).

`--light` asks the other question: fitted materials, but under the capture's true light (the
HDRI the synth rendered the photos with, as the fit's equirect map, held fixed). What the
material fit then gets right or wrong is the shading model's and the geometry's doing, not the
light estimate's; the fitted parts' means are printed.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import scipy.sparse.csgraph as cg
from scipy.spatial import cKDTree

PARTS = {1106: "sphere", 96: "cube", 1536: "torus"}  # vertices: 48 x 23 + 2, bevelled cube, 64 x 24
TRUTH = {"cube": ((0.03, 0.18, 0.75), 0.08, 0.0), "torus": ((1.0, 0.71, 0.29), 0.22, 1.0)}


def part_labels(capture: Path) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth vertices and the part name index (0 sphere, 1 cube, 2 torus) of each."""
    from nrconvert.synth.ply import read_ply

    v, f = read_ply(capture / "gt_mesh.ply")
    adj = sp.coo_matrix((np.ones(f.size), (f.ravel(), np.roll(f, 1, 1).ravel())), shape=(len(v), len(v)))
    n, comp = cg.connected_components(adj, directed=False)
    sizes = np.bincount(comp)
    names = list(PARTS.values())
    return v, np.array([names.index(PARTS[int(sizes[c])]) for c in range(n)])[comp]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--capture", type=Path, required=True)
    ap.add_argument("--glb", type=Path, required=True)
    ap.add_argument("--light", action="store_true", help="fit the material under the true light A instead")
    args = ap.parse_args()
    if args.light:
        return light_oracle(args)
    from nrconvert.bake import chain, pbr
    from nrconvert.config import make_config
    from nrconvert.pipeline import Run, convert

    verts, label = part_labels(args.capture)
    tree, fitted = cKDTree(verts), chain.bake_material_maps

    def truth(fit, points, ao):
        base, orm = fitted(fit, points, ao)
        part = label[tree.query(points)[1]]
        orm[part == 0, 1:] = (0.8, 0.0)
        for k, name in ((1, "cube"), (2, "torus")):
            colour, rough, metal = TRUTH[name]
            base[part == k] = pbr.linear_to_srgb(np.array(colour, np.float32))
            orm[part == k, 1:] = (rough, metal)
        return base, orm

    chain.bake_material_maps = truth
    convert(Run(args.capture, args.glb, make_config(**stored_settings(args.glb)), resume=True, redo="bake"))


def true_light(capture: Path, height: int = 64) -> np.ndarray:
    """The capture's HDRI A as a (H, 2H, 3) equirect in bake.asset.EnvLight's layout: each HDRI
    texel's radiance binned by its direction (Blender's environment mapping), weighed by its
    solid angle. Read by Blender in a subprocess (bpy beside torch in one process is not safe)."""
    import json
    import subprocess
    import sys
    import tempfile

    world = json.loads((capture / "transforms_train.json").read_text())["nrconvert"]["world"]
    code = ("import bpy, os, sys, numpy as np; b = os.path.join(bpy.utils.resource_path('LOCAL'), 'datafiles', "
            "'studiolights', 'world'); im = bpy.data.images.load(os.path.join(b, sys.argv[1])); "
            "np.save(sys.argv[2], np.array(im.pixels[:], np.float32).reshape(im.size[1], im.size[0], -1)[..., :3])")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-c", code, world["hdri"], f"{tmp}/a.npy"], check=True, capture_output=True)
        img = np.load(f"{tmp}/a.npy") * float(world.get("strength", 1.0))  # rows bottom-up, as Blender stores them
    rows, cols = img.shape[:2]
    v = (np.arange(rows) + 0.5) / rows
    u = (np.arange(cols) + 0.5) / cols
    theta = np.pi * (v - 0.5)  # elevation
    # bake.asset.EnvLight's layout is Blender's (phi = 2 pi (0.5 - u)); the world's mapping node
    # turns the lookup direction by rotation_z, so a texel looks along phi - rotation_z
    phi = 2 * np.pi * (0.5 - u) - np.radians(float(world.get("rotation_z", 0.0)))
    t, a = np.meshgrid(theta, phi, indexing="ij")
    i = np.clip(((0.5 - t / np.pi) * height).astype(int), 0, height - 1)
    j = np.clip(((0.5 - np.angle(np.exp(1j * a)) / (2 * np.pi)) * 2 * height).astype(int), 0, 2 * height - 1)
    w = np.cos(t).ravel()
    flat = i.ravel() * 2 * height + j.ravel()
    num = np.stack([np.bincount(flat, w * img[..., c].ravel(), height * 2 * height) for c in range(3)], -1)
    den = np.bincount(flat, w, height * 2 * height)[:, None]
    return (num / np.maximum(den, 1e-12)).reshape(height, 2 * height, 3).astype(np.float32)


def reporting(bake_maps, capture: Path):
    """`bake_maps` (chain.bake_material_maps) that first prints each part's mean fitted material
    at LOD0's texels (the first call)."""
    verts, label = part_labels(capture)
    tree, said = cKDTree(verts), []

    def report(fit, points, ao):
        if not said:
            said.append(True)
            albedo, rough, metal = fit.query(points)
            part = label[tree.query(points)[1]]
            for k, name in enumerate(PARTS.values()):
                m = part == k
                print(f"{name}: albedo {np.round(albedo[m].mean(0), 3)} roughness {rough[m].mean():.3f} "
                      f"metallic {metal[m].mean():.3f} (metal > 0.5: {(metal[m] > 0.5).mean():.0%})", flush=True)
        return bake_maps(fit, points, ao)

    return report


def light_oracle(args: argparse.Namespace) -> None:
    """Re-bake with the light fixed to the truth (an equirect map light) and report each part's
    fitted material; bench/relight.py then measures the GLB."""
    import torch

    from nrconvert.bake import chain, pbr
    from nrconvert.config import make_config
    from nrconvert.pipeline import Run, convert

    env = torch.from_numpy(true_light(args.capture)).clamp(min=1e-6).log()

    class TrueLight(pbr.EnvMapLight):
        def __init__(self, height: int = 64, radiance: float = 1.0, lobes: int = 128):
            super().__init__(height, radiance, lobes)
            with torch.no_grad():
                self.log_env.copy_(env)
            self.log_env.requires_grad_(False)

    pbr.EnvMapLight = TrueLight
    chain.bake_material_maps = reporting(chain.bake_material_maps, args.capture)
    settings = stored_settings(args.glb)
    settings["overrides"]["pbr_light"] = "map"
    convert(Run(args.capture, args.glb, make_config(**settings), resume=True, redo="bake"))


def stored_settings(glb: Path) -> dict:
    """make_config's arguments for the run that wrote `glb`: its recorded settings, neural off."""
    import dataclasses
    import json

    from nrconvert.config import Config
    from nrconvert.settings_record import RECORD

    stored = json.loads((glb.with_suffix(".work") / RECORD).read_text())
    names = {f.name for f in dataclasses.fields(Config)} - {"preset"}
    return {"preset": stored["preset"], "overrides": {k: v for k, v in stored.items() if k in names} | {"neural": False}}


if __name__ == "__main__":
    main()
