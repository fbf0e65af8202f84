"""Relightable export: LOD chain (MSFT_lod), PBR maps, the `captured` variant, the .hdr light.

Every check reads the written files back with real readers (pygltflib, PIL, the Khronos
validator, our RGBE reader against hand-made bytes). `make_pbr_asset` is also loaded by path by
blender_tests/test_import_pbr.py and tests/test_threejs.py, so Blender and three.js see the very
asset checked here. It imports neither torch nor the test package (Blender loads it by path).
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pygltflib
import pytest
from nrconvert.bake.asset import BakedAsset, EnvLight, Lod, MaterialMaps
from nrconvert.bake.tangents import compute_tangents
from nrconvert.bake.uv import unwrap
from nrconvert.capture.model import Frame
from nrconvert.errors import OutputError
from nrconvert.export.frames import points_to_gltf
from nrconvert.export.glb import write_glb
from nrconvert.export.hdr import decode_rgbe, encode_rgbe, read_hdr, write_hdr
from nrconvert.mesh import Mesh
from PIL import Image

VERSION = "0.1.0-test-pbr"
NAME = "pbr_object"
CENTER = np.array([0.2, -0.1, 0.6])
RADII = np.array([0.9, 0.6, 0.45])
LOD_RINGS = [(16, 32), (9, 18), (5, 10)]  # (latitude rings, longitude segments) per LOD
LOD_TEXTURE = [64, 32, 16]
COVERAGE = [0.4, 0.1, 0.0]


def welded_ellipsoid(n_lat: int, n_lon: int) -> Mesh:
    """Closed lat-long ellipsoid with single pole vertices and no seam (unwrap cuts its own)."""
    theta = np.linspace(0.0, np.pi, n_lat + 1)[1:-1, None]
    phi = np.linspace(0.0, 2 * np.pi, n_lon, endpoint=False)[None, :]
    ring = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi),
                     np.cos(theta) * np.ones_like(phi)], -1).reshape(-1, 3)
    unit = np.concatenate([[[0.0, 0.0, 1.0]], ring, [[0.0, 0.0, -1.0]]])
    south = len(unit) - 1
    faces = []
    for j in range(n_lon):
        j1 = (j + 1) % n_lon
        faces.append([0, 1 + j, 1 + j1])
        for i in range(n_lat - 2):
            a, b = 1 + i * n_lon + j, 1 + i * n_lon + j1
            c, d = a + n_lon, b + n_lon
            faces += [[a, c, b], [b, c, d]]
        last = 1 + (n_lat - 2) * n_lon
        faces.append([last + j, south, last + j1])
    normals = unit / RADII
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    return Mesh((CENTER + unit * RADII).astype(np.float32), np.asarray(faces, np.int64),
                normals.astype(np.float32))


def _maps(size: int, k: int, normal: bool) -> MaterialMaps:
    """Distinct, channel-asymmetric maps, so a swapped map, channel or flip shows."""
    y, x = np.mgrid[0:size, 0:size]
    cell = max(size // 8, 1)
    on = ((y // cell + x // cell) % 2).astype(np.uint8)
    captured = np.stack([on * 180 + 40, x * 255 // (size - 1), np.full_like(x, 60 + 40 * k)], -1)
    base = np.stack([y * 255 // (size - 1), np.full_like(x, 200), on * 90 + 20], -1)
    orm = np.stack([255 - on * 100, x * 200 // (size - 1) + 30, y * 255 // (size - 1)], -1)
    nmap = None
    if normal:
        v = np.stack([0.4 * np.sin(x / size * 6 * np.pi), 0.3 * np.cos(y / size * 4 * np.pi),
                      np.ones(x.shape)], -1)
        v /= np.linalg.norm(v, axis=-1, keepdims=True)
        nmap = np.rint((v * 0.5 + 0.5) * 255).astype(np.uint8)
    return MaterialMaps(captured=captured.astype(np.uint8), base_color=base.astype(np.uint8),
                        orm=orm.astype(np.uint8), normal=nmap)


def sky(height: int = 64) -> np.ndarray:
    """(H, 2H, 3) linear radiance: a sky gradient with a sun ~4 decades above the darkest pixel.
    64 rows, like the baker's maps (three.js's PMREM needs a map at least 64 pixels wide)."""
    y, x = np.mgrid[0:height, 0:2 * height].astype(np.float64)
    img = np.stack([0.02 + 0.5 * (1 - y / height), 0.03 + 0.6 * (1 - y / height),
                    0.05 + 0.9 * (1 - y / height)], -1) * (1.0 + 0.2 * np.sin(x / 3.0))[..., None]
    img[10:13, 30:34] = [180.0, 160.0, 120.0]
    img[-1, :] = 0.0  # black row: RGBE's zero code
    return img.astype(np.float32)


def make_pbr_asset(with_light: bool = True) -> BakedAsset:
    """Three LODs (LOD0 with given tangents, LOD1 with tangents left to the exporter, LOD2
    without a normal map), all maps, one camera, an environment light."""
    lods = []
    for k, ((n_lat, n_lon), size) in enumerate(zip(LOD_RINGS, LOD_TEXTURE)):
        mesh = unwrap(welded_ellipsoid(n_lat, n_lon), size, padding=1)
        maps = _maps(size, k, normal=k < 2)
        if k == 0:
            mesh.tangents = compute_tangents(mesh)
        lods.append(Lod(mesh, maps, screen_coverage=COVERAGE[k]))
    c2w = np.eye(4)
    c2w[:3, 3] = CENTER + [0.0, -2.2, 0.0]
    c2w[:3, :3] = [[1, 0, 0], [0, 0, -1], [0, 1, 0]]  # OpenGL camera looking along +Y, Z up
    frame = Frame(Path("photos/r_000.png"), c2w, fx=100.0, fy=100.0, cx=64.0, cy=48.0,
                  width=128, height=96)
    sh9 = np.linspace(-0.5, 2.0, 27).reshape(9, 3)
    light = EnvLight(sky(), sh9) if with_light else None
    return BakedAsset(lods, up_axis="z", cameras=[frame], light=light,
                      metadata={"name": NAME, "source": "test"})


def read_accessor(gltf: pygltflib.GLTF2, index: int) -> np.ndarray:
    acc = gltf.accessors[index]
    view = gltf.bufferViews[acc.bufferView]
    dtype = {pygltflib.FLOAT: np.float32, pygltflib.UNSIGNED_SHORT: np.uint16,
             pygltflib.UNSIGNED_INT: np.uint32}[acc.componentType]
    width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}[acc.type]
    start = view.byteOffset + (acc.byteOffset or 0)
    data = np.frombuffer(gltf.binary_blob(), dtype, acc.count * width, start)
    return data.reshape(acc.count, width) if width > 1 else data


def read_texture(gltf: pygltflib.GLTF2, texture: int) -> np.ndarray:
    image = gltf.images[gltf.textures[texture].source]
    assert image.mimeType == "image/png"
    view = gltf.bufferViews[image.bufferView]
    png = gltf.binary_blob()[view.byteOffset:view.byteOffset + view.byteLength]
    return np.asarray(Image.open(io.BytesIO(png)))


@pytest.fixture(scope="module")
def validator_available() -> None:
    from nrconvert.errors import DependencyError
    from nrconvert.export import validate

    try:
        validate.find_node()
        validate.find_validator_package()
    except DependencyError as exc:
        pytest.skip(f"glTF-Validator unavailable: {exc}")


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    asset = make_pbr_asset()
    path = tmp_path_factory.mktemp("pbr") / "relit.glb"
    summary = write_glb(asset, path, version=VERSION)
    return asset, path, summary, pygltflib.GLTF2().load(str(path))


def _node(gltf: pygltflib.GLTF2, name: str) -> int:
    found = [i for i, n in enumerate(gltf.nodes) if n.name == name]
    assert len(found) == 1, [n.name for n in gltf.nodes]
    return found[0]


def test_validator_reports_no_errors(written, validator_available):
    from nrconvert.export.validate import assert_valid, validate_glb

    _, path, summary, gltf = written
    report = validate_glb(path)
    assert report.errors == 0, report.format()
    # Only infos, both from MSFT_lod being a vendor extension the validator does not know: it
    # cannot validate it, and so cannot see that MSFT_lod uses the lower LOD nodes (which must
    # not be scene roots). Anything else (non-unit tangents, bad texture refs ...) is a failure.
    lod_nodes = {f"/nodes/{_node(gltf, f'{NAME}_LOD{k}')}" for k in (1, 2)}
    messages = {(m["severity"], m["code"], m["pointer"]) for m in report.messages}
    assert messages == {("info", "UNSUPPORTED_EXTENSION", "/extensionsUsed/2")} | {
        ("info", "UNUSED_OBJECT", p) for p in lod_nodes}, report.format(("error", "warning",
                                                                          "info", "hint"))
    assert "MSFT_lod" in report.format(("info",)) and report.warnings == 0
    assert assert_valid(path).ok
    assert sorted(p.name for p in path.parent.iterdir()) == ["relit.glb", "relit.hdr"]
    assert summary["environment"] == str(path.with_suffix(".hdr"))
    assert [lod["pbr"] for lod in summary["lods"]] == [True, True, True]


def test_lod_chain(written):
    asset, _, _, gltf = written
    ids = [_node(gltf, f"{NAME}_LOD{k}") for k in range(3)]
    lod0 = gltf.nodes[ids[0]]
    assert lod0.extensions == {"MSFT_lod": {"ids": ids[1:]}}
    assert lod0.extras == {"MSFT_screencoverage": COVERAGE}  # one value per LOD, LOD0's first
    assert "MSFT_lod" in gltf.extensionsUsed and not gltf.extensionsRequired
    roots = gltf.scenes[gltf.scene].nodes
    assert roots == [ids[0], _node(gltf, "capture_cameras")]
    children = {c for n in gltf.nodes for c in (n.children or [])}
    assert not children & set(ids)  # lower LODs: neither roots nor anybody's children
    for k, i in enumerate(ids):
        mesh = gltf.meshes[gltf.nodes[i].mesh]
        assert mesh.name == f"{NAME}_LOD{k}" and len(mesh.primitives) == 1
        prim = mesh.primitives[0]
        src = asset.lods[k].mesh
        np.testing.assert_allclose(read_accessor(gltf, prim.attributes.POSITION),
                                   points_to_gltf(src.vertices, "z"), atol=1e-6)
        np.testing.assert_allclose(read_accessor(gltf, prim.attributes.TEXCOORD_0), src.uvs)
        np.testing.assert_array_equal(read_accessor(gltf, prim.indices).reshape(-1, 3), src.faces)
    tris = [asset.lods[k].mesh.n_triangles for k in range(3)]
    assert tris[0] > tris[1] > tris[2]
    camera = gltf.nodes[gltf.nodes[_node(gltf, "capture_cameras")].children[0]]
    assert camera.extras["nrconvert_camera"]["image"] == "r_000.png"


def _default_material(gltf, k):
    return gltf.meshes[gltf.nodes[_node(gltf, f"{NAME}_LOD{k}")].mesh].primitives[0]


def test_pbr_materials_carry_every_map(written):
    asset, _, _, gltf = written
    for k in range(3):
        prim = _default_material(gltf, k)
        maps = asset.lods[k].maps
        mat = gltf.materials[prim.material]
        assert not mat.extensions  # lit: no unlit extension on the default material
        pbr = mat.pbrMetallicRoughness
        np.testing.assert_array_equal(read_texture(gltf, pbr.baseColorTexture.index),
                                      maps.base_color)
        assert pbr.metallicRoughnessTexture.index == mat.occlusionTexture.index
        np.testing.assert_array_equal(read_texture(gltf, mat.occlusionTexture.index), maps.orm)
        assert (pbr.metallicFactor, pbr.roughnessFactor) == (1.0, 1.0)
        if maps.normal is not None:
            np.testing.assert_array_equal(read_texture(gltf, mat.normalTexture.index), maps.normal)
        else:
            assert mat.normalTexture is None
    sampler = gltf.samplers[gltf.textures[0].sampler]
    assert sampler.wrapS == sampler.wrapT == pygltflib.CLAMP_TO_EDGE


def test_captured_variant_is_unlit_photo_texture(written):
    asset, _, _, gltf = written
    assert gltf.extensions == {"KHR_materials_variants": {"variants": [{"name": "captured"}]}}
    assert {"KHR_materials_variants", "KHR_materials_unlit"} <= set(gltf.extensionsUsed)
    for k in range(3):
        prim = _default_material(gltf, k)
        mappings = prim.extensions["KHR_materials_variants"]["mappings"]
        assert len(mappings) == 1 and mappings[0]["variants"] == [0]
        mat = gltf.materials[mappings[0]["material"]]
        assert mat.extensions == {"KHR_materials_unlit": {}} and mat.name.startswith("captured")
        np.testing.assert_array_equal(
            read_texture(gltf, mat.pbrMetallicRoughness.baseColorTexture.index),
            asset.lods[k].maps.captured)


def test_tangents_in_gltf_frame(written):
    asset, _, _, gltf = written
    for k in range(3):
        attrs = _default_material(gltf, k).attributes
        mesh = asset.lods[k].mesh
        if k == 2:  # no normal map, no tangents given: nothing to write
            assert attrs.TANGENT is None
            continue
        tan = read_accessor(gltf, attrs.TANGENT)
        expected = mesh.tangents if k == 0 else compute_tangents(mesh)  # LOD1: exporter's own
        np.testing.assert_allclose(tan[:, :3], points_to_gltf(expected[:, :3], "z"), atol=1e-6)
        np.testing.assert_array_equal(tan[:, 3], expected[:, 3])
        np.testing.assert_allclose(np.linalg.norm(tan[:, :3], axis=1), 1.0, atol=1e-6)
        assert set(np.unique(tan[:, 3])) <= {-1.0, 1.0}
        nrm = read_accessor(gltf, attrs.NORMAL)
        assert np.abs((tan[:, :3] * nrm).sum(1)).max() < 1e-4  # still a frame after the swap


def test_environment_hdr_round_trip(written):
    asset, path, _, gltf = written
    env = gltf.asset.extras["nrconvert"]["environment"]
    assert env == {"uri": "relit.hdr", "projection": "equirectangular", "width": 128,
                   "height": 64, "frame": "capture", "sh9": asset.light.sh9.tolist()}
    back = read_hdr(path.parent / env["uri"])
    src = asset.light.equirect
    assert back.shape == src.shape and back.dtype == np.float32
    tol = src.max(axis=-1, keepdims=True) / 256.0  # RGBE: 8 bits below the brightest channel
    assert (np.abs(back - src) <= tol + 1e-30).all()
    assert (back[-1] == 0).all() and back.max() == pytest.approx(180.0, rel=1 / 256)
    assert path.with_suffix(".hdr").read_bytes().startswith(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n")


def test_rgbe_codec_precision_and_edge_values(tmp_path):
    rng = np.random.default_rng(7)
    img = (10.0 ** rng.uniform(-6, 4, size=(9, 20, 3))).astype(np.float32)
    img[0, 0] = [0.0, 0.0, 0.0]
    img[0, 1] = [-1.0, 2.0, 0.5]  # negative: clamped to 0 (RGBE has no sign)
    write_hdr(tmp_path / "x.hdr", img)
    back = read_hdr(tmp_path / "x.hdr")
    ref = np.clip(img, 0, None)
    assert (np.abs(back - ref) <= ref.max(-1, keepdims=True) / 256.0).all()
    rel = np.abs(back - ref).max(-1) / ref.max(-1).clip(1e-30)
    assert 0 < rel.max() <= 1 / 256 and (back[0, 0] == 0).all()
    assert back[0, 1, 0] <= 2.0 / 256  # the clamped channel: half a step of the pixel's scale
    codes = encode_rgbe(img)
    assert (codes[..., :3].max(-1)[ref.max(-1) > 0] >= 128).all()  # normalised mantissas
    np.testing.assert_array_equal(decode_rgbe(codes), back)
    assert [p.name for p in tmp_path.iterdir()] == ["x.hdr"]
    with pytest.raises(ValueError, match="finite"):
        write_hdr(tmp_path / "nan.hdr", np.full((2, 4, 3), np.nan, np.float32))


def test_read_hdr_decodes_run_length_scanlines(tmp_path):
    """Hand-made new-style RLE file (as Radiance and stb write it): runs and literals mixed."""
    w = 10
    row = bytes([2, 2, 0, w])
    row += bytes([128 + 6, 200, 4, 100, 110, 120, 130])  # R: six 200s, then 4 literals
    row += bytes([128 + w, 128])  # G: one run
    row += bytes([w]) + bytes(range(130, 130 + w))  # B: all literals
    row += bytes([128 + w, 129])  # E: exponent 129 -> scale 2^(129-136)
    (tmp_path / "rle.hdr").write_bytes(b"#?RGBE\nFORMAT=32-bit_rle_rgbe\nEXPOSURE=1.0\n\n-Y 2 +X 10\n"
                                       + row + row)
    img = read_hdr(tmp_path / "rle.hdr")
    r = np.array([200] * 6 + [100, 110, 120, 130]) + 0.5
    expected = np.stack([r, np.full(w, 128.5), np.arange(130, 130 + w) + 0.5], -1) / 128.0
    np.testing.assert_allclose(img, np.stack([expected, expected]), rtol=1e-6)
    (tmp_path / "bad.hdr").write_bytes(b"#?RADIANCE\n\n+Y 2 +X 10\n" + row)
    with pytest.raises(ValueError, match="resolution"):
        read_hdr(tmp_path / "bad.hdr")
    (tmp_path / "short.hdr").write_bytes(b"#?RADIANCE\n\n-Y 2 +X 10\n" + row[:9])
    with pytest.raises(ValueError, match="truncated|bad run-length"):
        read_hdr(tmp_path / "short.hdr")


def test_failed_glb_write_removes_its_hdr(tmp_path):
    (tmp_path / "out.glb").mkdir()  # the GLB cannot replace a folder
    with pytest.raises(OutputError, match="folder"):
        write_glb(make_pbr_asset(), tmp_path / "out.glb", version=VERSION)
    assert [p.name for p in tmp_path.iterdir()] == ["out.glb"]
    with pytest.raises(OutputError, match=r"\.hdr"):
        write_glb(make_pbr_asset(), tmp_path / "out.hdr", version=VERSION)


def test_without_light_no_hdr_and_no_environment(tmp_path):
    path = tmp_path / "dark.glb"
    summary = write_glb(make_pbr_asset(with_light=False), path, version=VERSION)
    assert summary["environment"] is None and [p.name for p in tmp_path.iterdir()] == ["dark.glb"]
    gltf = pygltflib.GLTF2().load(str(path))
    assert "environment" not in gltf.asset.extras["nrconvert"]


def test_mixed_chain_keeps_unlit_default_where_no_pbr(tmp_path, validator_available):
    """An LOD baked without PBR maps exports as before (unlit captured default, no mapping)."""
    from nrconvert.export.validate import validate_glb

    asset = make_pbr_asset(with_light=False)
    lod = asset.lods[2]
    lod.maps = MaterialMaps(captured=lod.maps.captured)
    path = tmp_path / "mixed.glb"
    write_glb(asset, path, version=VERSION)
    gltf = pygltflib.GLTF2().load(str(path))
    prim = _default_material(gltf, 2)
    assert gltf.materials[prim.material].extensions == {"KHR_materials_unlit": {}}
    assert not prim.extensions and _default_material(gltf, 0).extensions
    report = validate_glb(path)
    assert report.errors == 0 and report.warnings == 0, report.format()


@pytest.mark.parametrize("breakage, message", [
    (lambda a: setattr(a.lods[1], "screen_coverage", 0.5), r"lods\[1\].screen_coverage"),
    (lambda a: setattr(a.lods[2], "screen_coverage", -0.1), r"lods\[2\].screen_coverage"),
    (lambda a: setattr(a.lods[1].maps, "orm", a.lods[1].maps.orm.astype(np.float32)),
     r"lods\[1\].maps.orm must be a \(H, W, 3\) uint8"),
    (lambda a: setattr(a.lods[0].mesh, "tangents", a.lods[0].mesh.tangents[:, :3]),
     r"lods\[0\].mesh.tangents must be a finite \(\d+, 4\)"),
    (lambda a: setattr(a.lods[2].mesh, "uvs", None), r"lods\[2\].mesh.uvs are missing"),
    (lambda a: setattr(a.light, "equirect", a.light.equirect[:, :10]), r"light.equirect"),
    (lambda a: setattr(a.light, "sh9", a.light.sh9[:4]), r"light.sh9"),
    (lambda a: setattr(a, "lods", []), r"asset.lods is empty"),
])
def test_malformed_assets_are_refused(tmp_path, breakage, message):
    asset = make_pbr_asset()
    breakage(asset)
    with pytest.raises(ValueError, match=message):
        write_glb(asset, tmp_path / "x.glb", version=VERSION)
    assert list(tmp_path.iterdir()) == []
