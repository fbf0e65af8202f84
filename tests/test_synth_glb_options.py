"""Tests of the evaluation options of `render_glb` / `blender_heldout`, rendered by real Blender.

The GLB is written here with pygltflib in the layout the exporter uses: an LOD chain of two
spheres of different size (`asset_LOD0` a scene root carrying MSFT_lod, `asset_LOD1` reachable
only through it), a default PBR material (red/blue checker base colour, ORM texture, striped
normal map with TANGENTs) and a `KHR_materials_variants` variant `captured` mapping to an unlit
green texture. The capture is cameras only (3 views, 48 px, 4 samples): these tests check what
Blender shows, not how a reconstruction looks.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nrconvert.errors import UsageError
from nrconvert.metrics.blender import blender_heldout
from nrconvert.synth import BlenderRenderError, render_glb
from nrconvert.synth import cameras as cams
from nrconvert.synth.capture import world_spec
from nrconvert.synth.presets import CAMERA_ANGLE_X, CAMERA_RADIUS

pytestmark = [pytest.mark.blender,
              pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="bpy not installed")]

SIZE, SAMPLES = 48, 4
R_LOD0, R_LOD1 = 0.8, 0.35


def _sphere(radius: float, n_lat: int, n_lon: int) -> dict[str, np.ndarray]:
    """A glTF (Y-up) UV sphere with normals, UVs and tangents along +u; seam and poles duplicated."""
    theta, phi = np.meshgrid(np.linspace(0, np.pi, n_lat + 1), np.linspace(0, 2 * np.pi, n_lon + 1), indexing="ij")
    n = np.stack([np.sin(theta) * np.cos(phi), np.cos(theta), -np.sin(theta) * np.sin(phi)], -1).reshape(-1, 3)
    t = np.stack([-np.sin(phi), np.zeros_like(phi), -np.cos(phi), np.ones_like(phi)], -1).reshape(-1, 4)
    uv = np.stack([phi / (2 * np.pi), theta / np.pi], -1).reshape(-1, 2)
    i, j = np.meshgrid(np.arange(n_lat), np.arange(n_lon), indexing="ij")
    a, b = i * (n_lon + 1) + j, (i + 1) * (n_lon + 1) + j
    faces = np.concatenate([np.stack([a, b, b + 1], -1), np.stack([a, b + 1, a + 1], -1)]).reshape(-1, 3)
    return {"POSITION": radius * n, "NORMAL": n, "TANGENT": t, "TEXCOORD_0": uv, "faces": faces}


def _textures() -> dict[str, np.ndarray]:
    """Checker albedo, uniform ORM (no occlusion, roughness 0.35, no metal), striped normals,
    and the 'photo-lit' captured texture: green, so it is told apart from the checker by hue."""
    y, x = np.mgrid[:64, :64]
    checker = ((x // 8 + y // 8) % 2).astype(bool)
    base = np.where(checker[..., None], [200, 20, 20], [20, 40, 200])
    orm = np.broadcast_to([255, 90, 0], (64, 64, 3))
    tilt = np.where((x // 4) % 2 == 0, 0.7, -0.7)
    normal = np.stack([tilt, np.zeros_like(tilt), np.sqrt(1 - tilt**2)], -1) * 127.5 + 127.5
    captured = np.stack([40 + 2 * x, np.full_like(x, 210), np.full_like(x, 30)], -1)
    return {k: np.clip(v, 0, 255).astype(np.uint8) for k, v in
            dict(base=base, orm=orm, normal=normal, captured=captured).items()}


class _Blob:
    """Buffer views and accessors of one GLB binary chunk (4-byte aligned)."""

    def __init__(self, gl, g) -> None:
        self.g_mod, self.g, self.data = gl, g, bytearray()

    def view(self, raw: bytes, target: int | None = None) -> int:
        self.data += b"\0" * (-len(self.data) % 4)
        self.g.bufferViews.append(self.g_mod.BufferView(buffer=0, byteOffset=len(self.data),
                                                        byteLength=len(raw), target=target))
        self.data += raw
        return len(self.g.bufferViews) - 1

    def accessor(self, arr: np.ndarray, ctype: int, kind: str, target: int, bounds: bool = False) -> int:
        gl = self.g_mod
        acc = gl.Accessor(bufferView=self.view(arr.tobytes(), target), componentType=ctype,
                          count=len(arr), type=kind)
        if bounds:
            acc.min, acc.max = arr.min(0).tolist(), arr.max(0).tolist()
        self.g.accessors.append(acc)
        return len(self.g.accessors) - 1

    def texture(self, rgb: np.ndarray) -> int:
        import io

        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="PNG")
        self.g.images.append(self.g_mod.Image(bufferView=self.view(buf.getvalue()), mimeType="image/png"))
        self.g.textures.append(self.g_mod.Texture(source=len(self.g.images) - 1))
        return len(self.g.textures) - 1


def _materials(gl, blob: _Blob) -> None:
    tex = {k: blob.texture(v) for k, v in _textures().items()}
    pbr = gl.Material(name="pbr", pbrMetallicRoughness=gl.PbrMetallicRoughness(
        baseColorTexture=gl.TextureInfo(index=tex["base"]), metallicFactor=1.0, roughnessFactor=1.0,
        metallicRoughnessTexture=gl.TextureInfo(index=tex["orm"])),
        occlusionTexture=gl.OcclusionTextureInfo(index=tex["orm"]),
        normalTexture=gl.NormalMaterialTexture(index=tex["normal"], scale=1.0))
    captured = gl.Material(name="captured", extensions={"KHR_materials_unlit": {}},
                           pbrMetallicRoughness=gl.PbrMetallicRoughness(
                               baseColorTexture=gl.TextureInfo(index=tex["captured"]),
                               metallicFactor=0.0, roughnessFactor=1.0))
    blob.g.materials += [pbr, captured]


def _mesh(gl, blob: _Blob, sphere: dict[str, np.ndarray]) -> int:
    f32 = {k: np.ascontiguousarray(sphere[k], np.float32) for k in ("POSITION", "NORMAL", "TANGENT", "TEXCOORD_0")}
    attrs = gl.Attributes(
        POSITION=blob.accessor(f32["POSITION"], gl.FLOAT, gl.VEC3, gl.ARRAY_BUFFER, bounds=True),
        NORMAL=blob.accessor(f32["NORMAL"], gl.FLOAT, gl.VEC3, gl.ARRAY_BUFFER),
        TANGENT=blob.accessor(f32["TANGENT"], gl.FLOAT, gl.VEC4, gl.ARRAY_BUFFER),
        TEXCOORD_0=blob.accessor(f32["TEXCOORD_0"], gl.FLOAT, gl.VEC2, gl.ARRAY_BUFFER))
    idx = np.ascontiguousarray(sphere["faces"].reshape(-1), np.uint32)
    prim = gl.Primitive(attributes=attrs, material=0,
                        indices=blob.accessor(idx, gl.UNSIGNED_INT, gl.SCALAR, gl.ELEMENT_ARRAY_BUFFER),
                        extensions={"KHR_materials_variants": {"mappings": [{"material": 1, "variants": [0]}]}})
    blob.g.meshes.append(gl.Mesh(primitives=[prim]))
    return len(blob.g.meshes) - 1


def write_lod_glb(path: Path) -> Path:
    """The two-LOD, two-material test asset described in the module docstring."""
    import pygltflib as gl

    g = gl.GLTF2(scene=0)
    blob = _Blob(gl, g)
    _materials(gl, blob)
    m0, m1 = _mesh(gl, blob, _sphere(R_LOD0, 24, 48)), _mesh(gl, blob, _sphere(R_LOD1, 8, 16))
    g.nodes = [gl.Node(name="asset_LOD0", mesh=m0, extensions={"MSFT_lod": {"ids": [1]}}),
               gl.Node(name="asset_LOD1", mesh=m1)]
    g.scenes = [gl.Scene(nodes=[0])]
    g.extensions = {"KHR_materials_variants": {"variants": [{"name": "captured"}]}}
    g.extensionsUsed = ["MSFT_lod", "KHR_materials_variants", "KHR_materials_unlit"]
    g.buffers = [gl.Buffer(byteLength=len(blob.data) + (-len(blob.data) % 4))]
    g.set_binary_blob(bytes(blob.data) + b"\0" * (-len(blob.data) % 4))
    g.save_binary(str(path))
    return path


def write_camera_capture(root: Path) -> Path:
    """A capture of cameras only: train = test = 3 views, transparent film, worlds A and B."""
    dirs = np.array([[1.0, 0.0, 0.3], [-0.5, 0.8, 0.5], [0.2, -0.9, -0.2]])
    poses = cams.camera_poses(dirs / np.linalg.norm(dirs, axis=1, keepdims=True), CAMERA_RADIUS)
    block = {"background": "transparent", "world": world_spec("forest.exr"),
             "relight_world": world_spec("courtyard.exr"), "samples": SAMPLES, "denoise": False, "seed": 0}
    frames = [{"file_path": f"test/r_{i:03d}.png", "transform_matrix": m.tolist()} for i, m in enumerate(poses)]
    doc = {**cams.intrinsics(SIZE, SIZE, CAMERA_ANGLE_X), "nrconvert": block, "frames": frames}
    root.mkdir(parents=True)
    for split in ("train", "test"):
        (root / f"transforms_{split}.json").write_text(json.dumps(doc), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("glb_options")
    return write_lod_glb(root / "asset.glb"), write_camera_capture(root / "capture"), root / "renders"


@pytest.fixture(scope="module")
def render(setup):
    """render(**options) -> (views, H, W, 4) floats; each option set is rendered once per module."""
    glb, capture, out = setup
    cache: dict[tuple, np.ndarray] = {}

    def _render(**opts) -> np.ndarray:
        key = tuple(sorted(opts.items()))
        if key not in cache:
            paths = render_glb(glb, capture, out / str(len(cache)), **opts)
            cache[key] = np.stack([np.asarray(Image.open(p).convert("RGBA"), np.float64) / 255 for p in paths])
        return cache[key]
    return _render


def _object_rgb(img: np.ndarray) -> np.ndarray:
    return img[..., :3][img[..., 3] > 0.99]


def test_bad_option_combinations_are_usage_errors(setup) -> None:
    glb, capture, out = setup
    with pytest.raises(UsageError):
        render_glb(glb, capture, out, variant="captured", captured_as_base_color=True)
    with pytest.raises(UsageError):
        render_glb(glb, capture, out, lod=-1)


def test_lod_option_renders_only_that_lod(render) -> None:
    cover = {k: render(variant="captured", lod=k)[..., 3].mean(axis=(1, 2)) for k in (0, 1)}
    cover[None] = render(variant="captured")[..., 3].mean(axis=(1, 2))
    np.testing.assert_array_equal(cover[None], cover[0])  # default: LOD0 alone, LOD1 hidden
    ratio = cover[1] / cover[0]  # silhouette area goes with radius squared: (0.35 / 0.8)^2 = 0.19
    assert np.all((ratio > 0.12) & (ratio < 0.28)), ratio


def test_missing_lod_fails_and_names_the_lods_found(setup) -> None:
    glb, capture, out = setup
    with pytest.raises(BlenderRenderError, match=r"_LOD2.*\[0, 1\]"):
        render_glb(glb, capture, out / "lod2", lod=2)


def test_captured_variant_shows_the_unlit_texture(render) -> None:
    pbr, captured = _object_rgb(render()), _object_rgb(render(variant="captured"))
    g = captured.mean(0)
    assert g[1] > 0.6 and g[1] > 1.5 * g[2]  # the green captured texture, at full brightness
    assert pbr.mean(0)[1] < 0.5 * pbr.mean(0)[[0, 2]].max()  # the red/blue checker, lit


def test_unknown_variant_fails(setup) -> None:
    glb, capture, out = setup
    with pytest.raises(BlenderRenderError, match="no material variant 'shiny'.*captured"):
        render_glb(glb, capture, out / "shiny", variant="shiny")


def test_captured_as_base_color_is_lit_unlike_the_unlit_variant(render) -> None:
    """The baseline takes the captured texture as albedo, so it changes with the light; the
    unlit variant does not."""
    unlit_a, unlit_b = render(variant="captured"), render(variant="captured", world="relight_world")
    base_a, base_b = render(captured_as_base_color=True), render(captured_as_base_color=True, world="relight_world")
    np.testing.assert_allclose(unlit_a, unlit_b, atol=2 / 255)
    obj = base_a[..., 3] > 0.99
    assert np.abs(base_a - base_b)[..., :3][obj].mean() > 0.02
    assert np.abs(base_a - unlit_a)[..., :3][obj].mean() > 0.05
    rgb = _object_rgb(base_a).mean(0)
    assert rgb[1] > rgb[0] and rgb[1] > 1.5 * rgb[2]  # green albedo, not the red/blue checker


@pytest.mark.parametrize("lod", [0, 1])  # LOD1 is not a scene root: the importer's orphan case
def test_normal_map_off_changes_the_shading(render, lod: int) -> None:
    with_map, without = render(lod=lod), render(lod=lod, normal_map=False)
    obj = with_map[..., 3] > 0.99
    np.testing.assert_array_equal(with_map[..., 3], without[..., 3])
    assert np.abs(with_map - without)[..., :3][obj].mean() > 0.02


def test_normal_map_off_without_a_normal_map_fails(setup) -> None:
    glb, capture, out = setup
    with pytest.raises(BlenderRenderError, match="no rendered material uses a normal map"):
        render_glb(glb, capture, out / "unlit_flat", variant="captured", normal_map=False)


def test_blender_heldout_forwards_the_options(setup) -> None:
    """With captured-variant renders as the photos, only the captured variant matches them."""
    glb, capture, _ = setup
    render_glb(glb, capture, capture / "test", variant="captured")
    same = blender_heldout(glb, capture, variant="captured")
    other = blender_heldout(glb, capture)
    assert same["views"] == 3 and same["psnr_object"] > 60
    assert other["psnr_object"] < 25
