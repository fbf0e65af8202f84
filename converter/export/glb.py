"""GLB writer: BakedAsset (capture frame) -> one self-contained glTF 2.0 binary, Y-up.

pygltflib's dataclasses describe the document; the `extras` are added to the JSON afterwards and
the GLB container is packed here, because pygltflib's serialiser silently drops `None` and empty
values from extras (metadata must round-trip as given). The file is written to a temp file in the
target folder and renamed, so a crash or full disk never leaves a half-written asset behind.
Imports no torch: the Blender tests and the add-on load this module inside Blender.
"""
from __future__ import annotations

import errno
import io
import json
import math
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pygltflib as gl
from PIL import Image

from ..bake.asset import BakedAsset
from ..capture.model import Frame
from ..errors import OutputError
from ..mesh import vertex_normals
from .frames import capture_to_gltf_matrix, points_to_gltf, pose_to_gltf, pose_to_trs

ASSET_NODE = "nrconvert_asset"
CAMERAS_NODE = "capture_cameras"
UNLIT = "KHR_materials_unlit"
ZNEAR = 0.01


class _Blob:
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
                          count=int(len(array)), type=kind)
        if with_bounds:  # POSITION needs min/max; the validator checks them against the data
            acc.min = [float(v) for v in array.min(axis=0)]
            acc.max = [float(v) for v in array.max(axis=0)]
        self.gltf.accessors.append(acc)
        return len(self.gltf.accessors) - 1

    def data(self) -> bytes:
        blob = b"".join(self.chunks)
        return blob + b"\0" * (-len(blob) % 4)


def write_glb(asset: BakedAsset, path: Path, *, version: str) -> dict:
    """Write `asset` as a GLB at `path` (atomically) and return a small summary.

    Raises OutputError (naming the path) when the folder is missing or not writable or the disk
    is full, and ValueError when the asset itself is malformed (a bug upstream).
    """
    path = Path(path)
    _check_asset(asset)
    doc, blob = build_gltf(asset, version=version)
    data = pack_glb(doc, blob)
    _atomic_write(path, data)
    h, w = asset.captured.shape[:2]
    return {"path": str(path), "triangles": asset.mesh.n_triangles,
            "vertices": int(len(asset.mesh.vertices)), "texture_size": [int(w), int(h)],
            "cameras": len(asset.cameras), "bytes": len(data)}


def build_gltf(asset: BakedAsset, *, version: str) -> tuple[dict, bytes]:
    """The glTF JSON document (as a dict) and its binary chunk, without touching the disk."""
    gltf = gl.GLTF2(asset=gl.Asset(version="2.0", generator=f"nrconvert {version}"))
    blob = _Blob(gltf)
    _add_mesh(gltf, blob, asset)
    _add_material(gltf, blob, asset.captured)
    name = str(asset.metadata.get("name") or ASSET_NODE)
    gltf.nodes.append(gl.Node(name=name, mesh=0))
    roots = [0]
    if asset.cameras:
        roots.append(_add_cameras(gltf, asset.cameras, asset.up_axis))
    gltf.scenes.append(gl.Scene(name=name, nodes=roots))
    gltf.scene = 0
    gltf.extensionsUsed = [UNLIT]
    data = blob.data()
    gltf.buffers.append(gl.Buffer(byteLength=len(data)))
    doc = json.loads(gltf.gltf_to_json())
    doc["asset"]["extras"] = {"nrconvert": _nrconvert_extras(asset, version)}
    for i, frame in enumerate(asset.cameras):
        doc["nodes"][2 + i]["extras"] = _camera_extras(frame, i)
    return doc, data


def _check_asset(asset: BakedAsset) -> None:
    """Refuse inputs that would produce an invalid GLB, with a message saying which array is bad."""
    m = asset.mesh
    v, f = np.asarray(m.vertices), np.asarray(m.faces)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0 or not np.isfinite(v).all():
        raise ValueError(f"mesh.vertices must be a finite, non-empty (V, 3) array, got {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
        raise ValueError(f"mesh.faces must be a non-empty (F, 3) array, got {f.shape}")
    if f.min() < 0 or f.max() >= len(v):
        raise ValueError(f"mesh.faces index outside [0, {len(v)})")
    if m.uvs is None or np.shape(m.uvs) != (len(v), 2) or not np.isfinite(m.uvs).all():
        raise ValueError("mesh.uvs must be a finite (V, 2) array (one UV per vertex)")
    c = np.asarray(asset.captured)
    if c.dtype != np.uint8 or c.ndim != 3 or c.shape[2] != 3 or min(c.shape[:2]) == 0:
        raise ValueError(f"the captured texture must be a (H, W, 3) uint8 image, got {c.dtype} {c.shape}")


def _unit_normals(asset: BakedAsset) -> np.ndarray:
    """glTF-frame unit normals; recomputed when missing, zero ones replaced by +Y (validator
    rejects non-unit NORMAL)."""
    m = asset.mesh
    n = m.normals if m.normals is not None else vertex_normals(m.vertices, m.faces)
    n = points_to_gltf(n, asset.up_axis).astype(np.float64)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    n = np.where(length > 1e-12, n / np.maximum(length, 1e-12), [0.0, 1.0, 0.0])
    return n.astype(np.float32)


def _add_mesh(gltf: gl.GLTF2, blob: _Blob, asset: BakedAsset) -> None:
    m = asset.mesh
    pos = points_to_gltf(m.vertices, asset.up_axis)
    uv = np.asarray(m.uvs, dtype=np.float32)
    small = len(pos) < 65536  # 65535 itself is the primitive-restart value, never an index
    idx = np.asarray(m.faces).reshape(-1).astype(np.uint16 if small else np.uint32)
    attrs = gl.Attributes(
        POSITION=blob.accessor(pos, gl.FLOAT, gl.VEC3, gl.ARRAY_BUFFER, with_bounds=True),
        NORMAL=blob.accessor(_unit_normals(asset), gl.FLOAT, gl.VEC3, gl.ARRAY_BUFFER),
        TEXCOORD_0=blob.accessor(uv, gl.FLOAT, gl.VEC2, gl.ARRAY_BUFFER))
    indices = blob.accessor(idx, gl.UNSIGNED_SHORT if small else gl.UNSIGNED_INT, gl.SCALAR,
                            gl.ELEMENT_ARRAY_BUFFER)
    prim = gl.Primitive(attributes=attrs, indices=indices, material=0, mode=gl.TRIANGLES)
    gltf.meshes.append(gl.Mesh(name=ASSET_NODE, primitives=[prim]))


def encode_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an (H, W, 3) uint8 sRGB image."""
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb), mode="RGB").save(out, format="PNG")
    return out.getvalue()


def _add_material(gltf: gl.GLTF2, blob: _Blob, base_color: np.ndarray) -> None:
    """Unlit material over the photo-lit texture (this slice ships the captured look); the PBR
    block keeps viewers without the unlit extension close to it (no metal, fully rough)."""
    view = blob.view(encode_png(base_color))
    gltf.images.append(gl.Image(name="base_color", bufferView=view, mimeType=gl.IMAGEPNG))
    gltf.samplers.append(gl.Sampler(magFilter=gl.LINEAR, minFilter=gl.LINEAR_MIPMAP_LINEAR,
                                    wrapS=gl.CLAMP_TO_EDGE, wrapT=gl.CLAMP_TO_EDGE))
    gltf.textures.append(gl.Texture(sampler=0, source=0, name="base_color"))
    pbr = gl.PbrMetallicRoughness(baseColorTexture=gl.TextureInfo(index=0, texCoord=0),
                                  metallicFactor=0.0, roughnessFactor=1.0)
    gltf.materials.append(gl.Material(name="captured", pbrMetallicRoughness=pbr,
                                      extensions={UNLIT: {}}))


def _camera_name(frame: Frame, i: int) -> str:
    return f"{i:03d}_{Path(frame.image_path).stem}"


def _add_cameras(gltf: gl.GLTF2, frames: list[Frame], up_axis: str) -> int:
    """A `capture_cameras` node with one perspective camera child per frame; returns its index.

    Children are nodes 2.. in frame order (build_gltf relies on it for their extras)."""
    first = len(gltf.nodes) + 1
    parent = gl.Node(name=CAMERAS_NODE, children=list(range(first, first + len(frames))))
    gltf.nodes.append(parent)
    for i, frame in enumerate(frames):
        yfov = 2.0 * math.atan(0.5 * frame.height / frame.fy)
        cam = gl.Perspective(yfov=yfov, aspectRatio=frame.width / frame.height, znear=ZNEAR)
        gltf.cameras.append(gl.Camera(name=_camera_name(frame, i), type=gl.PERSPECTIVE,
                                      perspective=cam))
        translation, rotation = pose_to_trs(pose_to_gltf(frame.c2w, up_axis))
        gltf.nodes.append(gl.Node(name=_camera_name(frame, i), camera=len(gltf.cameras) - 1,
                                  translation=translation, rotation=rotation))
    return first - 1


def _camera_extras(frame: Frame, i: int) -> dict:
    """Full intrinsics (glTF cameras hold only yfov/aspect) so tools can rebuild the photo's K."""
    return {"nrconvert_camera": jsonable({
        "index": i, "image": Path(frame.image_path).name, "split": frame.split,
        "fx": frame.fx, "fy": frame.fy, "cx": frame.cx, "cy": frame.cy,
        "width": frame.width, "height": frame.height})}


def _nrconvert_extras(asset: BakedAsset, version: str) -> dict:
    """asset.extras.nrconvert: the asset's metadata plus the keys the exporter owns."""
    extras = jsonable(dict(asset.metadata))
    extras.update({
        "version": version,
        "capture_to_asset": capture_to_gltf_matrix(asset.up_axis).tolist(),
        "up_axis": asset.up_axis,
    })
    return extras


def jsonable(value: Any) -> Any:
    """Plain-JSON copy of metadata: numpy scalars/arrays to Python, paths to strings, NaN/inf to
    None (glTF JSON forbids them), tuples and sets to lists, keys to strings."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"metadata value {value!r} ({type(value).__name__}) is not JSON-serialisable")


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


def _atomic_write(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder + rename: readers see the old file or the whole
    new one, never a torn write. Every OS failure becomes an OutputError naming `path`."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError("output folder does not exist", path=str(path),
                          hint=f"create {folder} first or choose another output path")
    if path.is_dir():
        raise OutputError("output path is a folder", path=str(path), hint="give a .glb file name")
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise _output_error(path, exc) from exc
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _output_error(path: Path, exc: OSError) -> OutputError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputError("disk full while writing the GLB", path=str(path),
                           hint="free space or write to another disk")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError("output folder is not writable", path=str(path),
                           hint="check the folder's permissions or choose another output path")
    return OutputError(f"cannot write the GLB: {exc.strerror or exc}", path=str(path))
