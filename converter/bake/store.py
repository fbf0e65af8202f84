"""The bake stage's output in the work folder, so `--resume` and `--redo export` skip baking.

One folder: lod{k}.npz (mesh with uvs, normals, tangents), lod{k}_{map}.png per map, light.npz,
and bake.json (LOD screen coverages, fit history) written last: it marks the folder complete.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from ..checkpoint import load_mesh, save_mesh
from .asset import EnvLight, Lod, MaterialMaps

MAPS = ("captured", "base_color", "orm", "normal")


def save_lods(folder: Path, lods: list[Lod], light: EnvLight | None, history: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bake.json").unlink(missing_ok=True)
    for k, lod in enumerate(lods):
        save_mesh(folder / f"lod{k}.npz", lod.mesh)
        for name in MAPS:
            img = getattr(lod.maps, name)
            if img is not None:
                _save_png(folder / f"lod{k}_{name}.png", img)
    if light is not None:
        tmp = folder / ".light.tmp.npz"
        np.savez(tmp, equirect=light.equirect, sh9=light.sh9)
        tmp.replace(folder / "light.npz")
    meta = {"coverage": [lod.screen_coverage for lod in lods], "history": history}
    tmp = folder / ".bake.json.tmp"
    tmp.write_text(json.dumps(meta))
    tmp.replace(folder / "bake.json")


def load_lods(folder: Path) -> tuple[list[Lod], EnvLight | None, list[dict]]:
    meta = json.loads((folder / "bake.json").read_text())
    lods = []
    for k, cov in enumerate(meta["coverage"]):
        maps = {name: _load_png(folder / f"lod{k}_{name}.png") for name in MAPS}
        lods.append(Lod(load_mesh(folder / f"lod{k}.npz"), MaterialMaps(**maps), float(cov)))
    light = None
    if (folder / "light.npz").exists():
        with np.load(folder / "light.npz", allow_pickle=False) as z:
            light = EnvLight(z["equirect"], z["sh9"])
    return lods, light, meta.get("history", [])


def is_complete(folder: Path) -> bool:
    return (folder / "bake.json").exists()


def _save_png(path: Path, rgb: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(np.ascontiguousarray(rgb)).save(tmp, format="PNG")
    tmp.replace(path)


def _load_png(path: Path) -> np.ndarray | None:
    return np.asarray(Image.open(path).convert("RGB")) if path.exists() else None
