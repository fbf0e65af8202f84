"""GLB container reading for the add-on (pure Python: Blender has no pygltflib or PIL).

The importer reads the JSON itself before Blender's glTF importer runs, for two reasons: an
unreadable file must end in a clean error report (not a traceback from deep inside the glTF
add-on), and our extensions (NRC_neural_material's feature textures, MSFT_lod, the asset extras)
are data Blender's importer does not keep. Every offset a file states is checked against the
bytes that are there.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

MAX_BYTES = 2 << 30
JSON_CHUNK, BIN_CHUNK = b"JSON", b"BIN\0"


class GlbFormatError(ValueError):
    """Not a GLB we can read; the message says what is wrong."""


def read_glb(path) -> tuple[dict, bytes]:
    """(JSON document, BIN chunk or b'') of a GLB file; GlbFormatError when malformed."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise GlbFormatError(f"{path.name} is {size} bytes, over the {MAX_BYTES} byte limit")
        data = path.read_bytes()
    except OSError as exc:
        raise GlbFormatError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_glb(data, path.name)


def parse_glb(data: bytes, name: str = "GLB") -> tuple[dict, bytes]:
    if len(data) < 20 or data[:4] != b"glTF":
        raise GlbFormatError(f"{name} is not a GLB (no glTF header)")
    version, total = struct.unpack_from("<II", data, 4)
    if version != 2:
        raise GlbFormatError(f"{name}: GLB version {version}, only 2 is supported")
    if total != len(data):
        raise GlbFormatError(f"{name}: header says {total} bytes, file has {len(data)} (truncated?)")
    chunks, at = {}, 12
    while at + 8 <= len(data):
        length, kind = struct.unpack_from("<I4s", data, at)
        if at + 8 + length > len(data):
            raise GlbFormatError(f"{name}: chunk {kind!r} runs past the end of the file (truncated?)")
        chunks.setdefault(kind, data[at + 8:at + 8 + length])
        at += 8 + length
    if JSON_CHUNK not in chunks:
        raise GlbFormatError(f"{name}: no JSON chunk")
    try:
        doc = json.loads(chunks[JSON_CHUNK].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise GlbFormatError(f"{name}: the JSON chunk does not parse ({exc})") from None
    if not isinstance(doc, dict):
        raise GlbFormatError(f"{name}: the JSON chunk is not an object")
    return doc, chunks.get(BIN_CHUNK, b"")


def pack_glb(doc: dict, binary: bytes) -> bytes:
    """A GLB from a JSON document and a BIN chunk (both padded to 4 bytes as the spec wants)."""
    text = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 4)
    body = struct.pack("<I4s", len(text), JSON_CHUNK) + text
    if binary:
        binary = bytes(binary) + b"\0" * (-len(binary) % 4)
        body += struct.pack("<I4s", len(binary), BIN_CHUNK) + binary
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


def drop_malformed_extensions(doc: dict) -> list[str]:
    """Remove extension entries on materials and nodes that are not JSON objects (Blender's
    glTF importer refuses the whole file over one of them); returns where each one was."""
    dropped = []
    for key in ("materials", "nodes"):
        for i, entry in enumerate(doc.get(key) if isinstance(doc.get(key), list) else []):
            exts = entry.get("extensions") if isinstance(entry, dict) else None
            if exts is None:
                continue
            if not isinstance(exts, dict):
                del entry["extensions"]
                dropped.append(f"{key}[{i}].extensions")
                continue
            for name in [n for n, v in exts.items() if not isinstance(v, dict)]:
                del exts[name]
                dropped.append(f"{key}[{i}].extensions.{name}")
    return dropped


def item(doc: dict, key: str, index) -> dict:
    """doc[key][index] as a dict, or ValueError naming the bad reference."""
    items = doc.get(key)
    if not isinstance(index, int) or isinstance(index, bool) or not isinstance(items, list) \
            or not 0 <= index < len(items) or not isinstance(items[index], dict):
        raise ValueError(f"{key}[{index!r}] does not exist")
    return items[index]


def image_bytes(doc: dict, binary: bytes, texture_index) -> tuple[bytes, str]:
    """(encoded image bytes, image name) behind textures[texture_index], from the BIN chunk."""
    texture = item(doc, "textures", texture_index)
    image = item(doc, "images", texture.get("source"))
    view = item(doc, "bufferViews", image.get("bufferView"))
    if view.get("buffer", 0) != 0:
        raise ValueError(f"image {texture.get('source')} is not in the GLB's own buffer")
    offset, length = view.get("byteOffset", 0), view.get("byteLength")
    if not all(isinstance(v, int) and v >= 0 for v in (offset, length)) or offset + length > len(binary):
        raise ValueError(f"image {texture.get('source')}: bufferView outside the BIN chunk")
    return binary[offset:offset + length], str(image.get("name") or f"image_{texture.get('source')}")
