"""The LOD table, read back from the GLB that was written: what a reader of the file gets, not
what the baker meant to write.

Per level: node name, triangles, vertices, texture size, the neural features' size, the screen
coverage threshold and the bytes this level takes in the file: its mesh data and the images of its
materials (variants and neural features included). nrconvert gives every level its own atlas, so
the rows add up to the file's size less its JSON and the capture cameras.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..export.lod import COVERAGE_KEY, MSFT_LOD
from ..export.neural import EXTENSION as NEURAL
from ..export.reader import Glb, GlbError, read_glb

VARIANTS = "KHR_materials_variants"


@dataclass
class LodRow:
    name: str
    triangles: int
    vertices: int
    texture: tuple[int, int] | None  # (width, height) of the base colour image
    features: tuple[int, int] | None  # (width, height) of the neural feature images
    coverage: float | None
    bytes: int


def lod_rows(path: Path) -> list[LodRow]:
    """One row per LOD, finest first. Raises GlbError when the file cannot be read."""
    glb = read_glb(path)
    doc = glb.doc
    chain, coverage = lod_chain(doc)
    rows = []
    for k, index in enumerate(chain):
        node = doc["nodes"][index]
        prim = doc["meshes"][node["mesh"]]["primitives"][0]
        materials = _materials(prim)
        views = _mesh_views(doc, prim) | {v for m in materials for v in _material_views(doc, m)}
        rows.append(LodRow(
            name=str(node.get("name", f"node {index}")),
            triangles=_count(doc, prim["indices"]) // 3 if "indices" in prim else _count(doc, prim["attributes"]["POSITION"]) // 3,
            vertices=_count(doc, prim["attributes"]["POSITION"]),
            texture=_base_color_size(glb, materials),
            features=_feature_size(glb, materials),
            coverage=coverage[k] if coverage else None,
            bytes=sum(int(doc["bufferViews"][v].get("byteLength", 0)) for v in views)))
    return rows


def lod_chain(doc: dict) -> tuple[list[int], list[float] | None]:
    """Node indices finest first (MSFT_lod on a root node, else `*_LOD<k>` names, else the first
    mesh node) and the MSFT_screencoverage thresholds when the file gives them."""
    nodes = doc.get("nodes") or []
    for i, node in enumerate(nodes):
        ext = (node.get("extensions") or {}).get(MSFT_LOD)
        if isinstance(ext, dict) and isinstance(ext.get("ids"), list):
            cov = (node.get("extras") or {}).get(COVERAGE_KEY)
            chain = [i, *ext["ids"]]
            return chain, [float(c) for c in cov] if isinstance(cov, list) and len(cov) == len(chain) else None
    named = sorted((int(m.group(1)), i) for i, n in enumerate(nodes) if "mesh" in n
                   for m in [re.search(r"_LOD(\d+)$", str(n.get("name", "")))] if m)
    chain = [i for _, i in named] or [i for i, n in enumerate(nodes) if "mesh" in n][:1]
    if not chain:
        raise GlbError("the file has no mesh node")
    return chain, None


def _materials(prim: dict) -> list[int]:
    """The default material first, then every variant's."""
    out = [prim["material"]] if "material" in prim else []
    for mapping in ((prim.get("extensions") or {}).get(VARIANTS) or {}).get("mappings", []):
        if mapping.get("material") not in out:
            out.append(mapping["material"])
    return out


def _count(doc: dict, accessor: int) -> int:
    return int(doc["accessors"][accessor]["count"])


def _mesh_views(doc: dict, prim: dict) -> set[int]:
    accessors = [*prim.get("attributes", {}).values()] + ([prim["indices"]] if "indices" in prim else [])
    return {doc["accessors"][a]["bufferView"] for a in accessors if "bufferView" in doc["accessors"][a]}


def _texture_indices(material: dict) -> list[int]:
    """Every texture a material refers to, ours (neural features) included."""
    refs = []

    def walk(value):
        if isinstance(value, dict):
            if isinstance(value.get("index"), int) and set(value) <= {"index", "texCoord", "scale", "strength", "extensions"}:
                refs.append(value["index"])
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk({k: v for k, v in material.items() if k != "extras"})
    return refs


def _material_views(doc: dict, index: int) -> set[int]:
    out = set()
    for t in _texture_indices(doc["materials"][index]):
        image = doc["images"][doc["textures"][t]["source"]]
        if "bufferView" in image:
            out.add(image["bufferView"])
    return out


def _image_size(glb: Glb, texture: int) -> tuple[int, int]:
    image = glb.doc["images"][glb.doc["textures"][texture]["source"]]
    view = glb.doc["bufferViews"][image["bufferView"]]
    start = int(view.get("byteOffset", 0))
    with Image.open(io.BytesIO(glb.bin[start:start + int(view["byteLength"])])) as im:
        return im.size  # the header only: nothing is decoded


def _base_color_size(glb: Glb, materials: list[int]) -> tuple[int, int] | None:
    for m in materials:
        base = (glb.doc["materials"][m].get("pbrMetallicRoughness") or {}).get("baseColorTexture")
        if base:
            return _image_size(glb, base["index"])
    return None


def _feature_size(glb: Glb, materials: list[int]) -> tuple[int, int] | None:
    for m in materials:
        ext = (glb.doc["materials"][m].get("extensions") or {}).get(NEURAL)
        if isinstance(ext, dict) and ext.get("featureTextures"):
            return _image_size(glb, ext["featureTextures"][0]["index"])
    return None
