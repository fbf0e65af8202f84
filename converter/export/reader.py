"""Read our GLBs back without pygltflib or torch: the container, accessors, images, the LOD chain
and each LOD's captured-look material (with its neural material when there is one).

Used by `nrconvert render` and kept numpy + PIL only so the Blender add-on can reuse it. Every
size a file states is checked against the bytes actually there before anything is allocated, and
every problem is a GlbError naming what is wrong, never an IndexError from deep inside.
"""
from __future__ import annotations

import io
import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .neural import (EXTENSION as NEURAL, NeuralMaterial, NeuralMaterialError, environment_texture_index, from_json,
                     uses_normals)

MAX_GLB_BYTES = 2 << 30
MAX_IMAGE_PIXELS = 8192 * 8192
_COMPONENTS = {5121: np.uint8, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


class GlbError(ValueError):
    """The file is not a GLB we can read; the message says what is wrong with it."""


@dataclass
class Glb:
    doc: dict
    bin: bytes


@dataclass
class LodPrimitive:
    """One LOD's triangles in the glTF frame and the material that shows the captured look."""

    name: str
    positions: np.ndarray  # (V, 3) float32
    uvs: np.ndarray  # (V, 2) float32
    faces: np.ndarray  # (F, 3) int64
    captured_material: int
    captured_texture: np.ndarray | None  # (H, W, 3) uint8, the unlit fallback
    neural: NeuralMaterial | None
    normals: np.ndarray | None = None  # (V, 3) float32, NORMAL as stored (a reflected encoding needs it)


def read_glb(path: Path) -> Glb:
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_GLB_BYTES:
        raise GlbError(f"{path} is {size} bytes, over the {MAX_GLB_BYTES} byte limit")
    data = path.read_bytes()
    if len(data) < 20 or data[:4] != b"glTF":
        raise GlbError(f"{path} is not a GLB (no glTF header)")
    version, total = struct.unpack_from("<II", data, 4)
    if version != 2 or total != len(data):
        raise GlbError(f"{path}: GLB version {version}, stated length {total} vs {len(data)} bytes (truncated?)")
    chunks, at = {}, 12
    while at + 8 <= len(data):
        length, kind = struct.unpack_from("<I4s", data, at)
        if at + 8 + length > len(data):
            raise GlbError(f"{path}: a chunk runs past the end of the file (truncated?)")
        chunks.setdefault(kind, data[at + 8:at + 8 + length])
        at += 8 + length
    if b"JSON" not in chunks:
        raise GlbError(f"{path}: no JSON chunk")
    try:
        doc = json.loads(chunks[b"JSON"].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GlbError(f"{path}: the JSON chunk does not parse ({exc})") from None
    if not isinstance(doc, dict):
        raise GlbError(f"{path}: the JSON chunk is not an object")
    return Glb(doc, chunks.get(b"BIN\0", b""))


def _get(doc: dict, key: str, i) -> dict:
    items = doc.get(key)
    if not isinstance(items, list) or not isinstance(i, int) or not 0 <= i < len(items) or not isinstance(items[i], dict):
        raise GlbError(f"{key}[{i}] does not exist")
    return items[i]


def _view_bytes(glb: Glb, view_index: int) -> tuple[bytes, int | None]:
    view = _get(glb.doc, "bufferViews", view_index)
    start, length = int(view.get("byteOffset", 0)), int(view.get("byteLength", -1))
    if view.get("buffer", 0) != 0 or start < 0 or length < 0 or start + length > len(glb.bin):
        raise GlbError(f"bufferViews[{view_index}] lies outside the binary chunk")
    return glb.bin[start:start + length], view.get("byteStride")


def accessor(glb: Glb, index: int) -> np.ndarray:
    acc = _get(glb.doc, "accessors", index)
    dtype, width = _COMPONENTS.get(acc.get("componentType")), _WIDTH.get(acc.get("type"))
    count = acc.get("count")
    if dtype is None or width is None or not isinstance(count, int) or count < 0:
        raise GlbError(f"accessors[{index}] has an unsupported type or count")
    raw, stride = _view_bytes(glb, acc.get("bufferView", -1))
    item = np.dtype(dtype).itemsize * width
    stride = stride or item
    offset = int(acc.get("byteOffset", 0))
    if count and offset + stride * (count - 1) + item > len(raw):
        raise GlbError(f"accessors[{index}] reads past its buffer view")
    rows = np.ndarray((count, width), dtype=dtype, buffer=raw, offset=offset, strides=(stride, np.dtype(dtype).itemsize))
    return np.array(rows[:, 0] if acc["type"] == "SCALAR" else rows)


def texture_image(glb: Glb, texture_index: int) -> np.ndarray:
    """Decoded pixels (H, W, C) uint8 of an embedded PNG/JPEG texture."""
    tex = _get(glb.doc, "textures", texture_index)
    img = _get(glb.doc, "images", tex.get("source", -1))
    if "bufferView" not in img:
        raise GlbError(f"images[{tex.get('source')}] is not embedded in the GLB")
    raw, _ = _view_bytes(glb, img["bufferView"])
    try:
        with Image.open(io.BytesIO(raw)) as im:
            if im.width * im.height > MAX_IMAGE_PIXELS:
                raise GlbError(f"images[{tex.get('source')}] is {im.width}x{im.height}, over the size limit")
            return np.asarray(im.convert("RGBA" if im.mode in ("RGBA", "LA", "P") else "RGB"))
    except (OSError, Image.DecompressionBombError) as exc:
        raise GlbError(f"images[{tex.get('source')}] does not decode ({exc})") from None


def neural_material(glb: Glb, material_index: int) -> NeuralMaterial | None:
    """The material's NRC_neural_material, None when it has none; GlbError when it is malformed."""
    ext = (_get(glb.doc, "materials", material_index).get("extensions") or {}).get(NEURAL)
    if ext is None:
        return None
    try:
        refs = ext["featureTextures"]
        images = tuple(texture_image(glb, ref["index"]) for ref in refs)
        if len(images) != 2:
            raise NeuralMaterialError("featureTextures must list two textures")
        env = environment_texture_index(ext)
        return from_json(ext, images, None if env is None else texture_image(glb, env))
    except (KeyError, TypeError) as exc:
        raise GlbError(f"materials[{material_index}].{NEURAL} is malformed ({exc!r})") from None
    except NeuralMaterialError as exc:
        raise GlbError(f"materials[{material_index}].{NEURAL}: {exc}") from None


def lod_primitives(glb: Glb) -> list[LodPrimitive]:
    """The LOD chain by node name (`*_LOD0`, `*_LOD1`, ...); a file without one gives its first
    mesh node as LOD0."""
    nodes = glb.doc.get("nodes") or []
    named = sorted(((int(m.group(1)), n) for n in nodes if isinstance(n, dict) and "mesh" in n
                    for m in [re.search(r"_LOD(\d+)$", str(n.get("name", "")))] if m), key=lambda t: t[0])
    chosen = [n for _, n in named] or [n for n in nodes if isinstance(n, dict) and "mesh" in n][:1]
    if not chosen:
        raise GlbError("the file has no mesh node")
    return [_primitive(glb, n) for n in chosen]


def _primitive(glb: Glb, node: dict) -> LodPrimitive:
    prim = (_get(glb.doc, "meshes", node["mesh"]).get("primitives") or [None])[0]
    if not isinstance(prim, dict) or "indices" not in prim:
        raise GlbError(f"node {node.get('name')!r} has no indexed primitive")
    attrs = prim.get("attributes") or {}
    if "POSITION" not in attrs or "TEXCOORD_0" not in attrs:
        raise GlbError(f"node {node.get('name')!r} lacks POSITION or TEXCOORD_0")
    pos, uv = accessor(glb, attrs["POSITION"]), accessor(glb, attrs["TEXCOORD_0"])
    idx = accessor(glb, prim["indices"]).astype(np.int64)
    if len(idx) % 3 or (len(idx) and (idx.min() < 0 or idx.max() >= len(pos))) or len(uv) != len(pos):
        raise GlbError(f"node {node.get('name')!r}: indices or UVs do not match its vertices")
    normals = accessor(glb, attrs["NORMAL"]).astype(np.float32) if "NORMAL" in attrs else None
    if normals is not None and normals.shape != pos.shape:
        raise GlbError(f"node {node.get('name')!r}: NORMAL does not match its vertices")
    material = _captured_material(prim)
    base = (_get(glb.doc, "materials", material).get("pbrMetallicRoughness") or {}).get("baseColorTexture")
    fallback = texture_image(glb, base["index"])[..., :3] if base else None
    neural = neural_material(glb, material)
    if neural is not None and uses_normals(neural.view_encoding) and normals is None:
        raise GlbError(f"node {node.get('name')!r}: {NEURAL} with viewEncoding {neural.view_encoding!r} "
                       "needs the primitive's NORMAL")
    return LodPrimitive(str(node.get("name", "")), pos.astype(np.float32), uv.astype(np.float32),
                        idx.reshape(-1, 3), material, fallback, neural, normals)


def _captured_material(prim: dict) -> int:
    """The material KHR_materials_variants maps to variant 0 (`captured`), else the default."""
    for mapping in ((prim.get("extensions") or {}).get("KHR_materials_variants") or {}).get("mappings", []):
        if 0 in mapping.get("variants", []):
            return int(mapping["material"])
    return int(prim.get("material", 0))
