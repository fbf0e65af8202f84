"""GLB of a scene built in blocks (nrconvert.blocks): one node per block, each with its LOD chain.

Layout: the scene's roots are one node per block (`NAME_block00`, ...) plus `capture_cameras`;
each block node holds its chain's LOD0 node as its only child, with `MSFT_lod` on it exactly as in
a single asset (glb.py), so every reader that handles one asset handles each block, and a reader
without MSFT_lod shows every block's LOD0. Each block node's `extras.nrconvert_block` gives the
block's id, its cube and its own region along the split axis (what the block is responsible for).
The scene's one environment light is the blocks' estimates averaged (blocks.merge). Written like
write_glb: the `.hdr` first, the GLB to a temp file and renamed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pygltflib as gl

from ..bake.asset import BakedAsset, Lod
from .container import Blob
from .glb import ASSET_NODE, _check_asset, add_lod_chain, finish_gltf, jsonable, write_with_light
from .materials import has_pbr

BLOCK_EXTRAS = "nrconvert_block"


@dataclass
class BlockPart:
    tag: str  # "_block00": the block node is NAME + tag, its LODs NAME + tag + "_LOD0", ...
    lods: list[Lod]
    extras: dict = field(default_factory=dict)  # extras.nrconvert_block of the block node


def build_blocks_gltf(parts: list[BlockPart], scene: BakedAsset, *, version: str,
                      hdr_uri: str | None = None) -> tuple[dict, bytes]:
    """Document and binary chunk; `scene` gives the cameras, light, up axis and metadata (its own
    `lods` are not written)."""
    gltf = gl.GLTF2(asset=gl.Asset(version="2.0", generator=f"nrconvert {version}"))
    blob = Blob(gltf)
    name = str(scene.metadata.get("name") or ASSET_NODE)
    roots = []
    for part in parts:
        lod0 = add_lod_chain(gltf, blob, part.lods, scene.up_axis, name + part.tag, tag=part.tag)
        gltf.nodes.append(gl.Node(name=name + part.tag, children=[lod0]))
        roots.append(len(gltf.nodes) - 1)
    doc, data = finish_gltf(gltf, blob, roots, scene, version=version, hdr_uri=hdr_uri,
                            chains=[p.lods for p in parts])
    for node, part in zip(roots, parts):
        doc["nodes"][node]["extras"] = {BLOCK_EXTRAS: jsonable(part.extras)}
    return doc, data


def write_blocks_glb(parts: list[BlockPart], scene: BakedAsset, path: Path, *, version: str) -> dict:
    """Write the blocks as one GLB at `path` (atomically) with the scene light beside it."""
    path = Path(path)
    if not parts:
        raise ValueError("no blocks to write")
    for part in parts:
        _check_asset(BakedAsset(lods=part.lods, light=scene.light))
    data, hdr_path = write_with_light(path, scene.light,
                                      lambda uri: build_blocks_gltf(parts, scene, version=version, hdr_uri=uri))
    return {"path": str(path), "bytes": len(data), "cameras": len(scene.cameras),
            "environment": str(hdr_path) if hdr_path is not None else None,
            "blocks": [{"tag": p.tag, "lods": [{"triangles": lod.mesh.n_triangles,
                                                  "texture_size": list(lod.maps.size), "pbr": has_pbr(lod.maps)}
                                                 for lod in p.lods]} for p in parts]}
