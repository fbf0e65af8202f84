"""The byte level of an export: the GLB's binary chunk, the GLB container, atomic file writes.

Kept apart from the glTF document logic (glb.py, lod.py, materials.py) so every file the exporter
writes (the GLB and the environment `.hdr` beside it) goes through the same atomic writer and the
same OSError -> OutputError mapping. Imports no torch (Blender loads the exporter).
"""
from __future__ import annotations

import json
import os
import struct
import tempfile
from pathlib import Path

import numpy as np
import pygltflib as gl

from .. import faults
from ..errors import NrcError, OutputError, os_error


class Blob:
    """Growing binary buffer: every view starts on a 4-byte boundary (glTF alignment rule)."""

    def __init__(self, gltf: gl.GLTF2) -> None:
        self.gltf = gltf
        self.chunks: list[bytes] = []
        self.size = 0

    def view(self, data: bytes, target: int | None = None) -> int:
        pad = -self.size % 4
        if pad:
            self.chunks.append(b"\0" * pad)
            self.size += pad
        self.gltf.bufferViews.append(
            gl.BufferView(buffer=0, byteOffset=self.size, byteLength=len(data), target=target))
        self.chunks.append(data)
        self.size += len(data)
        return len(self.gltf.bufferViews) - 1

    def accessor(self, array: np.ndarray, component: int, kind: str, target: int,
                 with_bounds: bool = False) -> int:
        view = self.view(np.ascontiguousarray(array).tobytes(), target)
        acc = gl.Accessor(bufferView=view, byteOffset=0, componentType=component,
                          count=len(array), type=kind)
        if with_bounds:  # POSITION needs min/max; the validator checks them against the data
            acc.min = [float(v) for v in array.min(axis=0)]
            acc.max = [float(v) for v in array.max(axis=0)]
        self.gltf.accessors.append(acc)
        return len(self.gltf.accessors) - 1

    def data(self) -> bytes:
        blob = b"".join(self.chunks)
        return blob + b"\0" * (-len(blob) % 4)


def pack_glb(doc: dict, blob: bytes) -> bytes:
    """GLB container: 12-byte header, JSON chunk (space-padded), BIN chunk (zero-padded)."""
    text = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode("utf-8")
    text += b" " * (-len(text) % 4)
    blob = blob + b"\0" * (-len(blob) % 4)
    total = 12 + 8 + len(text) + (8 + len(blob) if blob else 0)
    parts = [b"glTF", struct.pack("<II", 2, total), struct.pack("<I", len(text)), b"JSON", text]
    if blob:
        parts += [struct.pack("<I", len(blob)), b"BIN\0", blob]
    return b"".join(parts)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, data: bytes, what: str = "the GLB") -> None:
    """Write via a temp file in the same folder + rename: readers see the old file or the whole
    new one, never a torn write. Every OS failure becomes an OutputError naming `path`; `what`
    says which output it was ("the GLB", "the environment map")."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError("output folder does not exist", path=str(path),
                          hint=f"create {folder} first or choose another output path")
    if path.is_dir():
        raise OutputError("output path is a folder", path=str(path), hint="give a file name")
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            faults.disk_full(path.suffix.lstrip(".").lower(), str(path))
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise output_error(path, exc, what) from exc
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def output_error(path: Path, exc: OSError, what: str = "the GLB") -> NrcError:
    return os_error(exc, str(path), what)
