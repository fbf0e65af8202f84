"""Diagnostic: how well could the mixed-materials GLB relight if the material fit were perfect?

    python bench/relight_oracle.py --capture bench/.captures/materials_standard_transparent \
        --glb RUN/scene.glb          # RUN from a `balanced` conversion of that capture
    python bench/relight.py --glb RUN/scene.glb --capture bench/.captures/materials_standard_transparent

Re-bakes RUN's GLB in place (`--redo bake`, no neural stage; every other setting read back from
RUN's work folder, so the stored field is reused and never retrained) with each part's ground-truth material on our own mesh: base colour, roughness and
metallic of the glossy cube and the gold torus, the sphere's roughness and metallic (its albedo
is a painted texture, kept from the fit). What is left between this and ground truth is the
geometry's (and the sphere albedo's) share of the error. Parts are told apart by the connected
components of the capture's gt_mesh.ply, known by their vertex counts (synth/_blender_objects.py).
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
    args = ap.parse_args()
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
