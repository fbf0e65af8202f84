"""GLB exporter + validator wrapper, end to end with the real Khronos validator.

`make_sample_asset` is also loaded by blender_tests/conftest.py (by file path), so the Blender
import test checks the very asset these tests check.
"""
from __future__ import annotations

import errno
import io
import json
import os
import struct
import tempfile
from pathlib import Path

import numpy as np
import pygltflib
import pytest
from PIL import Image

from nrconvert.bake.asset import BakedAsset, Lod, MaterialMaps
from nrconvert.capture.model import Frame
from nrconvert.errors import DependencyError, OutputError, ValidationError
from nrconvert.export import validate as validate_mod
from nrconvert.export.frames import (capture_to_gltf_matrix, points_to_gltf, pose_to_gltf,
                                     quaternion_to_rotation)
from nrconvert.export.glb import build_gltf, pack_glb, write_glb
from nrconvert.export.validate import assert_valid, validate_glb
from nrconvert.mesh import Mesh

VERSION = "0.1.0-test"
CENTER = np.array([0.3, -0.2, 0.5])
RADII = np.array([1.0, 0.6, 0.4])  # distinct per axis: an axis mix-up cannot go unnoticed


def ellipsoid(n_lat: int = 12, n_lon: int = 24) -> Mesh:
    """Lat-long ellipsoid split along its seam (one UV per vertex), UV origin top-left."""
    theta = np.linspace(0.0, np.pi, n_lat + 1)[:, None]  # 0 = north pole (+Z), top of texture
    phi = np.linspace(0.0, 2 * np.pi, n_lon + 1)[None, :]
    unit = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi),
                     np.cos(theta) * np.ones_like(phi)], -1).reshape(-1, 3)
    verts = CENTER + unit * RADII
    normals = unit / RADII
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    u, v = np.meshgrid(np.linspace(0, 1, n_lon + 1), np.linspace(0, 1, n_lat + 1))
    uvs = np.stack([u, v], -1).reshape(-1, 2)
    faces = []
    for i in range(n_lat):
        for j in range(n_lon):
            a, b = i * (n_lon + 1) + j, i * (n_lon + 1) + j + 1
            c, d = a + n_lon + 1, b + n_lon + 1
            if i > 0:  # skip the zero-area triangle at the north pole
                faces.append([a, c, b])
            if i < n_lat - 1:  # and at the south pole
                faces.append([b, c, d])
    return Mesh(verts.astype(np.float32), np.asarray(faces, np.int64),
                normals.astype(np.float32), uvs.astype(np.float32))


def checker(h: int = 64, w: int = 128, cell: int = 8) -> np.ndarray:
    """Coloured checker, distinct in every channel so a channel swap or flip shows."""
    y, x = np.mgrid[0:h, 0:w]
    on = ((y // cell + x // cell) % 2).astype(np.uint8)
    return np.stack([on * 200 + 30, (x * 255 // (w - 1)).astype(np.uint8),
                     (y * 255 // (h - 1)).astype(np.uint8)], -1).astype(np.uint8)


def look_at(eye: np.ndarray, target: np.ndarray, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """OpenGL camera-to-world: camera -Z looks at the target, +Y towards `up`."""
    back = eye - target
    back /= np.linalg.norm(back)
    right = np.cross(up, back)
    right /= np.linalg.norm(right)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([right, np.cross(back, right), back], 1)
    c2w[:3, 3] = eye
    return c2w


def make_sample_asset(up_axis: str = "z") -> BakedAsset:
    """A small but complete BakedAsset: textured ellipsoid, two cameras, metadata."""
    frames = [Frame(Path("photos/r_000.png"), look_at(np.array([3.0, -2.0, 1.5]), CENTER),
                    fx=110.0, fy=110.0, cx=80.0, cy=60.0, width=160, height=120),
              Frame(Path("photos/r_001.png"), look_at(np.array([-1.0, 2.5, 2.5]), CENTER),
                    fx=90.0, fy=95.0, cx=50.0, cy=50.0, width=100, height=100, split="test")]
    meta = {"name": "sample_object", "psnr": np.float32(31.25), "n_iters": np.int64(2000),
            "bounds": np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]), "note": None,
            "tags": [], "env": {"sh": np.zeros((9, 3))}}
    return BakedAsset([Lod(ellipsoid(), MaterialMaps(checker()))], up_axis=up_axis, cameras=frames, metadata=meta)


@pytest.fixture(scope="module")
def validator_available() -> None:
    try:
        validate_mod.find_node()
        validate_mod.find_validator_package()
    except DependencyError as exc:
        pytest.skip(f"glTF-Validator unavailable: {exc}")


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[BakedAsset, Path, dict, pygltflib.GLTF2]:
    asset = make_sample_asset()
    path = tmp_path_factory.mktemp("glb") / "sample.glb"
    summary = write_glb(asset, path, version=VERSION)
    return asset, path, summary, pygltflib.GLTF2().load(str(path))


def read_accessor(gltf: pygltflib.GLTF2, index: int) -> np.ndarray:
    acc = gltf.accessors[index]
    view = gltf.bufferViews[acc.bufferView]
    dtype = {pygltflib.FLOAT: np.float32, pygltflib.UNSIGNED_SHORT: np.uint16,
             pygltflib.UNSIGNED_INT: np.uint32}[acc.componentType]
    width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3}[acc.type]
    start = view.byteOffset + (acc.byteOffset or 0)
    data = np.frombuffer(gltf.binary_blob(), dtype, acc.count * width, start)
    return data.reshape(acc.count, width) if width > 1 else data


def test_summary_and_clean_validation(written, validator_available):
    asset, path, summary, _ = written
    assert summary == {"path": str(path), "triangles": asset.mesh.n_triangles,
                       "vertices": len(asset.mesh.vertices), "texture_size": [128, 64],
                       "cameras": 2, "bytes": path.stat().st_size, "environment": None,
                       "lods": [{"triangles": asset.mesh.n_triangles, "pbr": False,
                                 "vertices": len(asset.mesh.vertices), "texture_size": [128, 64]}]}
    report = validate_glb(path)
    assert report.ok and report.errors == 0
    assert report.messages == [], report.format(("error", "warning", "info", "hint"))
    assert assert_valid(path, allow_warnings=()).ok
    assert [p.name for p in path.parent.iterdir()] == ["sample.glb"]  # no temp file left


def test_geometry_is_swapped_to_y_up(written):
    asset, _, _, gltf = written
    prim = gltf.meshes[0].primitives[0]
    pos = read_accessor(gltf, prim.attributes.POSITION)
    src = asset.mesh.vertices
    np.testing.assert_allclose(pos, np.stack([src[:, 0], src[:, 2], -src[:, 1]], 1), atol=1e-6)
    np.testing.assert_allclose(pos, points_to_gltf(src, "z"))
    acc = gltf.accessors[prim.attributes.POSITION]
    np.testing.assert_allclose(acc.min, pos.min(0))
    np.testing.assert_allclose(acc.max, pos.max(0))
    nrm = read_accessor(gltf, prim.attributes.NORMAL)
    np.testing.assert_allclose(nrm, points_to_gltf(asset.mesh.normals, "z"), atol=1e-6)
    np.testing.assert_allclose(read_accessor(gltf, prim.attributes.TEXCOORD_0), asset.mesh.uvs)
    idx = read_accessor(gltf, prim.indices)
    assert idx.dtype == np.uint16 and prim.mode == pygltflib.TRIANGLES
    np.testing.assert_array_equal(idx.reshape(-1, 3), asset.mesh.faces)
    for view in gltf.bufferViews:
        assert view.byteOffset % 4 == 0
    targets = {gltf.bufferViews[gltf.accessors[i].bufferView].target for i in
               (prim.attributes.POSITION, prim.attributes.NORMAL, prim.attributes.TEXCOORD_0)}
    assert targets == {pygltflib.ARRAY_BUFFER}
    assert gltf.bufferViews[gltf.accessors[prim.indices].bufferView].target == \
        pygltflib.ELEMENT_ARRAY_BUFFER


def test_texture_and_unlit_material(written):
    asset, _, _, gltf = written
    mat = gltf.materials[gltf.meshes[0].primitives[0].material]
    assert mat.extensions == {"KHR_materials_unlit": {}}
    assert gltf.extensionsUsed == ["KHR_materials_unlit"] and not gltf.extensionsRequired
    pbr = mat.pbrMetallicRoughness
    assert (pbr.metallicFactor, pbr.roughnessFactor) == (0.0, 1.0)
    tex = gltf.textures[pbr.baseColorTexture.index]
    sampler = gltf.samplers[tex.sampler]
    assert (sampler.magFilter, sampler.minFilter) == (pygltflib.LINEAR,
                                                      pygltflib.LINEAR_MIPMAP_LINEAR)
    assert sampler.wrapS == sampler.wrapT == pygltflib.CLAMP_TO_EDGE
    image = gltf.images[tex.source]
    assert image.mimeType == "image/png"
    view = gltf.bufferViews[image.bufferView]
    png = gltf.binary_blob()[view.byteOffset:view.byteOffset + view.byteLength]
    decoded = np.asarray(Image.open(io.BytesIO(png)))
    np.testing.assert_array_equal(decoded, asset.captured)


def test_capture_cameras(written):
    asset, _, _, gltf = written
    root = gltf.nodes[gltf.scenes[gltf.scene].nodes[0]]
    assert root.name == "sample_object" and root.mesh == 0
    parents = [n for n in gltf.nodes if n.name == "capture_cameras"]
    assert len(parents) == 1 and parents[0].matrix is None
    children = [gltf.nodes[i] for i in parents[0].children]
    assert [c.name for c in children] == ["000_r_000", "001_r_001"]
    for frame, node in zip(asset.cameras, children):
        cam = gltf.cameras[node.camera].perspective
        assert cam.yfov == pytest.approx(2 * np.arctan(frame.height / (2 * frame.fy)))
        assert cam.aspectRatio == pytest.approx(frame.width / frame.height)
        assert cam.znear == pytest.approx(0.01) and cam.zfar is None
        pose = np.eye(4)
        pose[:3, :3] = quaternion_to_rotation(node.rotation)
        pose[:3, 3] = node.translation
        np.testing.assert_allclose(pose, pose_to_gltf(frame.c2w, "z"), atol=1e-9)
        back = np.linalg.inv(capture_to_gltf_matrix("z")) @ pose
        np.testing.assert_allclose(back, frame.c2w, atol=1e-9)
        assert node.extras["nrconvert_camera"]["image"] == frame.image_path.name
        assert node.extras["nrconvert_camera"]["fx"] == frame.fx


def test_asset_extras(written):
    _, _, _, gltf = written
    assert gltf.asset.generator == f"nrconvert {VERSION}" and gltf.asset.version == "2.0"
    extras = gltf.asset.extras["nrconvert"]
    assert extras["version"] == VERSION and extras["up_axis"] == "z"
    assert extras["capture_to_asset"] == [[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]]
    assert extras["psnr"] == 31.25 and extras["n_iters"] == 2000
    assert extras["note"] is None and extras["tags"] == []  # kept, unlike pygltflib's writer
    assert extras["bounds"] == [[-1, -1, -1], [1, 1, 1]]
    assert extras["env"]["sh"] == [[0.0] * 3] * 9


def test_y_up_capture_is_identity(tmp_path):
    asset = make_sample_asset(up_axis="y")
    path = tmp_path / "y.glb"
    write_glb(asset, path, version=VERSION)
    gltf = pygltflib.GLTF2().load(str(path))
    pos = read_accessor(gltf, gltf.meshes[0].primitives[0].attributes.POSITION)
    np.testing.assert_allclose(pos, asset.mesh.vertices)
    assert gltf.asset.extras["nrconvert"]["capture_to_asset"] == np.eye(4).tolist()


def test_large_mesh_uses_uint32_indices(tmp_path, validator_available):
    n = 300  # 90,000 vertices: past the 16-bit index range
    y, x = np.mgrid[0:n, 0:n]
    verts = np.stack([x.ravel(), y.ravel(), np.zeros(n * n)], 1).astype(np.float32) / n
    q = (y[:-1, :-1] * n + x[:-1, :-1]).ravel()
    faces = np.concatenate([np.stack([q, q + 1, q + n], 1), np.stack([q + 1, q + n + 1, q + n], 1)])
    uvs = verts[:, :2].copy()
    asset = BakedAsset([Lod(Mesh(verts, faces, None, uvs), MaterialMaps(checker(8, 8, 2)))])
    path = tmp_path / "big.glb"
    write_glb(asset, path, version=VERSION)
    gltf = pygltflib.GLTF2().load(str(path))
    prim = gltf.meshes[0].primitives[0]
    assert gltf.accessors[prim.indices].componentType == pygltflib.UNSIGNED_INT
    nrm = read_accessor(gltf, prim.attributes.NORMAL)  # computed: +Z in capture = +Y in glTF
    np.testing.assert_allclose(nrm, np.tile([0.0, 1.0, 0.0], (n * n, 1)), atol=1e-6)
    assert not any(n.name == "capture_cameras" for n in gltf.nodes)
    assert validate_glb(path).messages == []


def test_missing_folder_raises_output_error(tmp_path):
    path = tmp_path / "nope" / "out.glb"
    with pytest.raises(OutputError, match="does not exist") as info:
        write_glb(make_sample_asset(), path, version=VERSION)
    assert str(path) in str(info.value) and info.value.path == str(path)
    assert not path.parent.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folder_raises_output_error(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="not writable"):
            write_glb(make_sample_asset(), folder / "out.glb", version=VERSION)
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o700)


def test_permission_denied_raises_output_error(tmp_path, monkeypatch):
    """Same path as above, simulated, so it also runs as root (CI containers)."""
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    path = tmp_path / "out.glb"
    with pytest.raises(OutputError, match="not writable") as info:
        write_glb(make_sample_asset(), path, version=VERSION)
    assert info.value.path == str(path) and list(tmp_path.iterdir()) == []


def test_disk_full_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "out.glb"
    path.write_bytes(b"previous asset")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OutputError, match="disk full") as info:
        write_glb(make_sample_asset(), path, version=VERSION)
    assert info.value.path == str(path)
    assert path.read_bytes() == b"previous asset"
    assert [p.name for p in tmp_path.iterdir()] == ["out.glb"]


def test_malformed_asset_is_refused(tmp_path):
    asset = make_sample_asset()
    asset.mesh.uvs = None
    with pytest.raises(ValueError, match="uvs"):
        write_glb(asset, tmp_path / "x.glb", version=VERSION)
    assert list(tmp_path.iterdir()) == []


def test_validator_catches_broken_glb(tmp_path, validator_available):
    doc, blob = build_gltf(make_sample_asset(), version=VERSION)
    pos = doc["meshes"][0]["primitives"][0]["attributes"]["POSITION"]
    doc["accessors"][pos]["count"] += 1  # one vertex more than the buffer view holds
    path = tmp_path / "broken.glb"
    path.write_bytes(pack_glb(doc, blob))
    report = validate_glb(path)
    assert not report.ok and report.errors >= 1
    assert "ACCESSOR_TOO_LONG" in report.codes("error")
    assert any(m["pointer"] == f"/accessors/{pos}" for m in report.messages)
    with pytest.raises(ValidationError, match="ACCESSOR_TOO_LONG"):
        assert_valid(path)


def test_validator_on_non_gltf_and_truncated_files(tmp_path, validator_available):
    junk = tmp_path / "junk.glb"
    junk.write_bytes(b"\x00not a gltf file at all")
    assert not validate_glb(junk).ok
    good = tmp_path / "good.glb"
    write_glb(make_sample_asset(), good, version=VERSION)
    cut = tmp_path / "cut.glb"
    cut.write_bytes(good.read_bytes()[:-100])
    assert not validate_glb(cut).ok


def test_validator_refuses_resources_outside_the_folder(tmp_path, validator_available):
    (tmp_path / "secret.bin").write_bytes(b"\0" * 12)
    inner = tmp_path / "asset"
    inner.mkdir()
    gltf = {"asset": {"version": "2.0"},
            "buffers": [{"uri": "../secret.bin", "byteLength": 12}]}
    (inner / "a.gltf").write_text(json.dumps(gltf))
    report = validate_glb(inner / "a.gltf")
    assert not report.ok
    assert any("outside the asset folder" in m["message"] for m in report.messages)


def test_missing_validator_package_or_node(tmp_path, monkeypatch):
    monkeypatch.setenv(validate_mod.ENV_PACKAGE, str(tmp_path))
    with pytest.raises(DependencyError, match="npm install"):
        validate_mod.find_validator_package()
    monkeypatch.delenv(validate_mod.ENV_PACKAGE)
    monkeypatch.delenv(validate_mod.ENV_NODE, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DependencyError, match="Node.js"):
        validate_mod.find_node()


def test_pack_glb_layout():
    data = pack_glb({"asset": {"version": "2.0"}}, b"abc")
    magic, version, length = struct.unpack_from("<4sII", data)
    assert (magic, version, length) == (b"glTF", 2, len(data)) and len(data) % 4 == 0
    json_len, json_type = struct.unpack_from("<I4s", data, 12)
    assert json_type == b"JSON" and json_len % 4 == 0
    bin_len, bin_type = struct.unpack_from("<I4s", data, 20 + json_len)
    assert (bin_len, bin_type) == (4, b"BIN\0")
