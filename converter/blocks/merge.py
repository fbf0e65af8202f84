"""Stitch finished blocks: one GLB with a node per block, or one GLB per block plus an index.

Blocks are read back from their work folders (bake/, neural/), never from memory, so `merge` runs
the same whether the blocks were made a moment ago in this process or yesterday on a farm. The
scene is measured as one: the blocks' LOD0 meshes are concatenated, their captured textures tiled
into one atlas (uvs remapped), and the ordinary metrics (held-out PSNR on object pixels) and report
run on that, so a block run's numbers compare with a single run's directly.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .. import __version__
from ..bake.asset import BakedAsset, EnvLight
from ..bake.neural_chain import load_neural
from ..bake.store import load_lods
from ..bake.texture import resize
from ..capture.model import Capture
from ..checkpoint import write_json
from ..errors import BlockError
from ..export.blocks_glb import BlockPart, write_blocks_glb
from ..export.frames import capture_to_gltf_matrix
from ..mesh import Mesh
from ..pipeline import Run
from .split import Layout
from .work import block_dir, missing_blocks


def load_parts(run: Run, layout: Layout) -> tuple[list[BlockPart], list[EnvLight | None], list[list[dict]]]:
    """Every block's LOD chain (neural materials attached), light and training history."""
    missing = missing_blocks(run.workdir, layout)
    if missing:
        names = ", ".join(map(str, missing))
        raise BlockError(f"block{'s' if len(missing) > 1 else ''} {names} of {len(layout.blocks)} "
                         f"{'are' if len(missing) > 1 else 'is'} not finished (no block.json)",
                         path=str(run.workdir), hint="run `nrconvert train` then `nrconvert bake` with "
                         f"--block {missing[0]} (and each other one named) and the same -o/--workdir and --blocks")
    parts, lights, histories = [], [], []
    for b in layout.blocks:
        folder = block_dir(run.workdir, b.id)
        lods, light, _ = load_lods(folder / "bake")
        if (folder / "neural" / "neural.json").exists():
            for lod, mat in zip(lods, load_neural(folder / "neural")):
                lod.maps.neural = mat
        parts.append(BlockPart(f"_block{b.id:02d}", lods, {"id": b.id, "lo": b.lo, "hi": b.hi, "own": b.own,
                                                          "axis": layout.axis}))
        lights.append(light)
        histories.append(_history(folder))
    return parts, lights, histories


def _history(folder: Path) -> list[dict]:
    from ..checkpoint import load_field_state

    return load_field_state(folder / "field.pt")["history"] if (folder / "field.pt").exists() else []


def joined_history(histories: list[list[dict]]) -> list[dict]:
    """One training curve for the report: the blocks' records one after the other, steps and
    seconds counted on, each record tagged with its block."""
    out, steps, seconds = [], 0, 0.0
    for k, hist in enumerate(histories, start=1):
        for rec in hist:
            out.append({**rec, "block": k, "step": rec.get("step", 0) + steps,
                        "seconds": rec.get("seconds", 0.0) + seconds})
        if hist:
            steps, seconds = out[-1]["step"], out[-1]["seconds"]
    return out


def average_light(lights: list[EnvLight | None], weights: list[float]) -> EnvLight | None:
    """One environment for the scene: the blocks' estimates of the same sky, weighted by cameras."""
    pairs = [(light, w) for light, w in zip(lights, weights) if light is not None]
    if not pairs:
        return None
    w = np.asarray([p[1] for p in pairs], np.float64)
    w = w / w.sum()
    equirect = sum(wi * p[0].equirect.astype(np.float64) for wi, p in zip(w, pairs))
    sh9 = sum(wi * p[0].sh9.astype(np.float64) for wi, p in zip(w, pairs))
    return EnvLight(equirect.astype(np.float32), sh9.astype(np.float32))


def combined(parts: list[BlockPart]) -> tuple[Mesh, np.ndarray]:
    """The blocks' LOD0 meshes as one mesh over one atlas of their captured textures (a grid of
    equal tiles), for metrics and the report: texels are only resampled, never refitted."""
    n = len(parts)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    side = max(p.lods[0].maps.captured.shape[0] for p in parts)
    atlas = np.zeros((rows * side, cols * side, 3), np.uint8)
    verts, faces, uvs, base = [], [], [], 0
    for k, p in enumerate(parts):
        r, c = divmod(k, cols)
        tex = p.lods[0].maps.captured
        if tex.shape[0] != side:
            tex = np.clip(resize(tex.astype(np.float32), side) + 0.5, 0, 255).astype(np.uint8)
        atlas[r * side:(r + 1) * side, c * side:(c + 1) * side] = tex
        m = p.lods[0].mesh
        verts.append(m.vertices)
        faces.append(m.faces + base)
        uvs.append((np.asarray(m.uvs) + [c, r]) / [cols, rows])
        base += len(m.vertices)
    mesh = Mesh(np.concatenate(verts).astype(np.float32), np.concatenate(faces),
                uvs=np.concatenate(uvs).astype(np.float32))
    return mesh, atlas


def scene_asset(capture: Capture, layout: Layout, parts: list[BlockPart], lights: list[EnvLight | None]
                ) -> BakedAsset:
    """What the stitched GLB holds besides the blocks: cameras, light, metadata."""
    light = average_light(lights, [len(b.cameras) for b in layout.blocks])
    meta = {"name": Path(capture.root).name or "nrconvert_asset", "source": capture.source,
            "blocks": {"count": len(layout.blocks), "axis": layout.axis, "overlap": layout.overlap,
                       "blocks": [{"id": b.id, "lo": b.lo, "hi": b.hi, "own": b.own} for b in layout.blocks]}}
    return BakedAsset(lods=parts[0].lods, up_axis=capture.up_axis, cameras=capture.frames, light=light,
                      metadata=meta)


def write_stitched(run: Run, parts: list[BlockPart], scene: BakedAsset) -> dict:
    summary = write_blocks_glb(parts, scene, run.output, version=__version__)
    _validated(run, [run.output])
    return summary


def write_tiles(run: Run, capture: Capture, layout: Layout, parts: list[BlockPart], lights, scene: BakedAsset
                ) -> tuple[dict, list[Path]]:
    """STEM_blockNN.glb per block (its own light and cameras) and STEM.index.json."""
    from ..export.glb import write_glb

    rot = capture_to_gltf_matrix(capture.up_axis)[:3, :3]
    tiles, paths = [], []
    for b, part, light in zip(layout.blocks, parts, lights):
        path = run.output.with_name(f"{run.output.stem}{part.tag}.glb")
        cams = [capture.train[i] for i in b.cameras] + [capture.test[i] for i in b.test_cameras]
        meta = {**scene.metadata, "name": f"{scene.metadata['name']}{part.tag}", "block": part.extras}
        summary = write_glb(BakedAsset(part.lods, capture.up_axis, cams, light, meta), path, version=__version__)
        corners = np.array([[x, y, z] for x in (b.lo[0], b.hi[0]) for y in (b.lo[1], b.hi[1])
                            for z in (b.lo[2], b.hi[2])]) @ rot.T
        tiles.append({"id": b.id, "file": path.name, "bytes": summary["bytes"], "own": b.own,
                      "bounds": {"min": b.lo, "max": b.hi},
                      "bounds_gltf": {"min": corners.min(0).tolist(), "max": corners.max(0).tolist()},
                      "triangles": [lod["triangles"] for lod in summary["lods"]],
                      "environment": Path(summary["environment"]).name if summary["environment"] else None})
        paths.append(path)
    _validated(run, paths)
    index = {"format": "nrconvert-tiles", "version": __version__, "name": scene.metadata["name"],
             "up_axis": capture.up_axis, "capture_to_asset": capture_to_gltf_matrix(capture.up_axis).tolist(),
             "axis": layout.axis, "overlap": layout.overlap, "tiles": tiles,
             "metrics": scene.metadata.get("metrics", {})}
    write_json(index_path(run.output), index)
    return index, paths


def index_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}.index.json")


def _validated(run: Run, paths: list[Path]) -> None:
    """Khronos-validate what was written; an invalid file (and its .hdr) never stays behind."""
    from ..export.validate import assert_valid

    if not run.validate:
        return
    try:
        for path in paths:
            assert_valid(path)
    except Exception:
        for path in paths:
            path.unlink(missing_ok=True)
            path.with_suffix(".hdr").unlink(missing_ok=True)
        raise


__all__ = ["combined", "joined_history", "load_parts", "scene_asset", "write_stitched", "write_tiles"]
