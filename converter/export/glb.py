"""GLB writer: BakedAsset (capture frame) -> one self-contained glTF 2.0 binary, Y-up.

The document is an LOD chain (lod.py) with PBR materials and the `captured` variant
(materials.py), capture cameras, and `asset.extras.nrconvert` metadata; the estimated environment
light goes to an `.hdr` beside the GLB (hdr.py), referenced from the metadata. pygltflib's
dataclasses describe the document; the `extras` are added to the JSON afterwards and the GLB
container is packed by container.py, because pygltflib's serialiser silently drops `None` and
empty values from extras (metadata must round-trip as given). Files are written to a temp file in
the target folder and renamed, so a crash or full disk never leaves a half-written asset behind.
Imports no torch: the Blender tests and the add-on load this module inside Blender.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pygltflib as gl

from ..bake.asset import BakedAsset, EnvLight, Lod
from ..bake.tangents import compute_tangents
from ..capture.model import Frame
from ..errors import OutputError
from .container import Blob, atomic_write, pack_glb
from .frames import capture_to_gltf_matrix, pose_to_gltf, pose_to_trs
from .hdr import hdr_bytes
from .neural import EXTENSION as NEURAL
from .lod import MSFT_LOD, add_lod_mesh, add_lod_nodes, check_coverage, lod_suffix
from .materials import (
    UNLIT,
    VARIANTS,
    add_lod_materials,
    encode_png,
    has_pbr,
    variant_mapping,
    variants_root,
)

__all__ = ["ASSET_NODE", "CAMERAS_NODE", "add_lod_chain", "build_gltf", "encode_png", "finish_gltf",
           "jsonable", "pack_glb", "write_glb", "write_with_light"]

ASSET_NODE = "nrconvert_asset"
CAMERAS_NODE = "capture_cameras"
ZNEAR = 0.01


def write_glb(asset: BakedAsset, path: Path, *, version: str) -> dict:
    """Write `asset` as a GLB at `path` (atomically) and return a small summary.

    With `asset.light`, the environment map is written first as `<stem>.hdr` beside the GLB (the
    GLB refers to it by that relative name); if the GLB then cannot be written, that `.hdr` is
    removed again. Raises OutputError (naming the path) when the folder is missing or not
    writable or the disk is full, and ValueError when the asset itself is malformed (a bug
    upstream).
    """
    path = Path(path)
    _check_asset(asset)
    data, hdr_path = write_with_light(path, asset.light, lambda uri: build_gltf(asset, version=version, hdr_uri=uri))
    h, w = asset.captured.shape[:2]
    return {"path": str(path), "triangles": asset.mesh.n_triangles,
            "vertices": len(asset.mesh.vertices), "texture_size": [int(w), int(h)],
            "cameras": len(asset.cameras), "bytes": len(data),
            "lods": [{"triangles": lod.mesh.n_triangles, "vertices": len(lod.mesh.vertices),
                      "texture_size": list(lod.maps.size), "pbr": has_pbr(lod.maps)}
                     for lod in asset.lods],
            "environment": str(hdr_path) if hdr_path is not None else None}



def write_with_light(path: Path, light, build) -> tuple[bytes, Path | None]:
    """Write the GLB that `build(hdr_uri)` makes (doc, blob) at `path`, and with a `light` its
    environment map first as `<stem>.hdr` beside it, both atomically; a GLB that cannot be
    written takes its `.hdr` with it. Returns the GLB bytes and the `.hdr` path (or None)."""
    hdr_path = path.with_suffix(".hdr") if light is not None else None
    if hdr_path is not None and hdr_path.name == path.name:
        raise OutputError("the GLB path ends in .hdr, where the environment map goes",
                          path=str(path), hint="give the output a .glb name")
    doc, blob = build(hdr_path.name if hdr_path is not None else None)
    data = pack_glb(doc, blob)
    if hdr_path is not None:
        atomic_write(hdr_path, hdr_bytes(light.equirect), what="the environment map")
    try:
        atomic_write(path, data)
    except OutputError:
        if hdr_path is not None:
            hdr_path.unlink(missing_ok=True)
        raise
    return data, hdr_path

def build_gltf(asset: BakedAsset, *, version: str, hdr_uri: str | None = None
               ) -> tuple[dict, bytes]:
    """The glTF JSON document (as a dict) and its binary chunk, without touching the disk.

    `hdr_uri` is the environment map's file name relative to the GLB (write_glb passes it); the
    light's SH coefficients are recorded either way."""
    gltf = gl.GLTF2(asset=gl.Asset(version="2.0", generator=f"nrconvert {version}"))
    blob = Blob(gltf)
    name = str(asset.metadata.get("name") or ASSET_NODE)
    root = add_lod_chain(gltf, blob, asset.lods, asset.up_axis, name)
    return finish_gltf(gltf, blob, [root], asset, version=version, hdr_uri=hdr_uri)


def add_lod_chain(gltf: gl.GLTF2, blob: Blob, lods: list[Lod], up_axis: str, name: str,
                  tag: str = "") -> int:
    """Materials, meshes and nodes of one LOD chain (`NAME_LOD0`...); returns LOD0's node, the
    one to list as a root (or as a child of a block node). `tag` goes into the material and image
    names (`_block00`), so chains of several blocks stay apart by name."""
    n = len(lods)
    meshes = []
    for k, lod in enumerate(lods):
        suffix = lod_suffix(n, k)
        default, captured = add_lod_materials(gltf, blob, lod.maps, tag + suffix)
        ext = variant_mapping(captured) if captured is not None else None
        meshes.append(add_lod_mesh(gltf, blob, lod.mesh, up_axis, name + suffix, default,
                                   _tangents(lod), ext))
    return add_lod_nodes(gltf, [name + lod_suffix(n, k) for k in range(n)], meshes,
                         [lod.screen_coverage for lod in lods])


def finish_gltf(gltf: gl.GLTF2, blob: Blob, roots: list[int], asset: BakedAsset, *, version: str,
                hdr_uri: str | None = None, chains: list[list[Lod]] | None = None) -> tuple[dict, bytes]:
    """Cameras, the scene over `roots`, the extensions used by the LOD `chains` (default: the
    asset's one), the buffer and `asset.extras.nrconvert`: the document and its binary chunk."""
    chains = chains if chains is not None else [asset.lods]
    roots = list(roots)
    name = str(asset.metadata.get("name") or ASSET_NODE)
    cameras = None
    if asset.cameras:
        cameras = _add_cameras(gltf, asset.cameras, asset.up_axis)
        roots.append(cameras)
    gltf.scenes.append(gl.Scene(name=name, nodes=roots))
    gltf.scene = 0
    lods = [lod for chain in chains for lod in chain]
    used = [UNLIT]
    if any(has_pbr(lod.maps) for lod in lods):
        used.append(VARIANTS)
        gltf.extensions = variants_root()
    if any(len(chain) > 1 for chain in chains):
        used.append(MSFT_LOD)
    if any(lod.maps.neural is not None for lod in lods):
        used.append(NEURAL)  # never in extensionsRequired: the unlit texture is the fallback
    gltf.extensionsUsed = used
    data = blob.data()
    gltf.buffers.append(gl.Buffer(byteLength=len(data)))
    doc = json.loads(gltf.gltf_to_json())
    doc["asset"]["extras"] = {"nrconvert": _nrconvert_extras(asset, version, hdr_uri)}
    for i, frame in enumerate(asset.cameras):
        doc["nodes"][cameras + 1 + i]["extras"] = _camera_extras(frame, i)
    return doc, data


def _tangents(lod: Lod) -> np.ndarray | None:
    """Capture-frame tangents to export: the baker's when given, else computed for a normal map
    (a tangent-space normal map is meaningless without its frame; compute_tangents is the very
    frame the baker uses), else none."""
    if lod.mesh.tangents is not None:
        return np.asarray(lod.mesh.tangents)
    return compute_tangents(lod.mesh) if lod.maps.normal is not None else None


def _check_image(img: Any, what: str) -> None:
    a = np.asarray(img)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3 or min(a.shape[:2]) == 0:
        raise ValueError(f"{what} must be a (H, W, 3) uint8 image, got {a.dtype} {a.shape}")


def _check_array(a: Any, shape: tuple, what: str) -> None:
    arr = np.asarray(a)
    if arr.shape != shape or not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr).all():
        raise ValueError(f"{what} must be a finite {shape} array (one row per vertex), "
                         f"got {arr.dtype} {arr.shape}")


def _check_lod(lod: Lod, k: int) -> None:
    m, at = lod.mesh, f"lods[{k}]"
    v, f = np.asarray(m.vertices), np.asarray(m.faces)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0 or not np.isfinite(v).all():
        raise ValueError(f"{at}.mesh.vertices must be a finite, non-empty (V, 3) array, "
                         f"got {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
        raise ValueError(f"{at}.mesh.faces must be a non-empty (F, 3) array, got {f.shape}")
    if f.min() < 0 or f.max() >= len(v):
        raise ValueError(f"{at}.mesh.faces index outside [0, {len(v)})")
    if m.uvs is None:
        raise ValueError(f"{at}.mesh.uvs are missing: each vertex needs one UV (unwrap first)")
    _check_array(m.uvs, (len(v), 2), f"{at}.mesh.uvs")
    if m.normals is not None:
        _check_array(m.normals, (len(v), 3), f"{at}.mesh.normals")
    if m.tangents is not None:
        _check_array(m.tangents, (len(v), 4), f"{at}.mesh.tangents")
    _check_image(lod.maps.captured, f"{at}.maps.captured")
    for key in ("base_color", "orm", "normal"):
        if getattr(lod.maps, key) is not None:
            _check_image(getattr(lod.maps, key), f"{at}.maps.{key}")
    nm = lod.maps.neural
    if nm is not None:
        feats = np.asarray(nm.features)
        if feats.ndim != 3 or feats.shape[2] != 8 or feats.dtype != np.uint8 or min(feats.shape[:2]) < 1:
            raise ValueError(f"{at}.maps.neural.features must be (H, W, 8) uint8, got {feats.shape} {feats.dtype}")
        if not all(np.isfinite(layer.weights).all() and np.isfinite(layer.bias).all() for layer in nm.layers):
            raise ValueError(f"{at}.maps.neural has non-finite MLP weights")


def _check_light(light: EnvLight) -> None:
    eq = np.asarray(light.equirect)
    if eq.ndim != 3 or eq.shape[2] != 3 or eq.shape[0] == 0 or eq.shape[1] != 2 * eq.shape[0]:
        raise ValueError(f"light.equirect must be an (H, 2H, 3) image, got {eq.shape}")
    if not np.issubdtype(eq.dtype, np.floating) or not np.isfinite(eq).all():
        raise ValueError(f"light.equirect must be finite floats, got {eq.dtype}")
    _check_array(light.sh9, (9, 3), "light.sh9")


def _check_asset(asset: BakedAsset) -> None:
    """Refuse inputs that would produce an invalid GLB, with a message saying which array is bad."""
    if not asset.lods:
        raise ValueError("asset.lods is empty: the exporter needs at least LOD0")
    for k, lod in enumerate(asset.lods):
        _check_lod(lod, k)
    if len(asset.lods) > 1:
        check_coverage([lod.screen_coverage for lod in asset.lods])
    if asset.light is not None:
        _check_light(asset.light)


def _camera_name(frame: Frame, i: int) -> str:
    return f"{i:03d}_{Path(frame.image_path).stem}"


def _add_cameras(gltf: gl.GLTF2, frames: list[Frame], up_axis: str) -> int:
    """A `capture_cameras` node with one perspective camera child per frame; returns its index.

    Its children follow it, in frame order (build_gltf relies on it for their extras)."""
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


def _environment(light: EnvLight, hdr_uri: str | None) -> dict:
    """asset.extras.nrconvert.environment (layout documented in docs/format.md)."""
    h, w = np.asarray(light.equirect).shape[:2]
    env = {"uri": hdr_uri, "projection": "equirectangular", "width": int(w), "height": int(h),
           "frame": "capture", "sh9": np.asarray(light.sh9, dtype=np.float64).tolist()}
    if hdr_uri is None:
        del env["uri"]
    return env


def _nrconvert_extras(asset: BakedAsset, version: str, hdr_uri: str | None = None) -> dict:
    """asset.extras.nrconvert: the asset's metadata plus the keys the exporter owns."""
    extras = jsonable(dict(asset.metadata))
    extras.update({
        "version": version,
        "capture_to_asset": capture_to_gltf_matrix(asset.up_axis).tolist(),
        "up_axis": asset.up_axis,
    })
    if asset.light is not None:
        extras["environment"] = _environment(asset.light, hdr_uri)
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
