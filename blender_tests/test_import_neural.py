"""A GLB with NRC_neural_material through Blender's importers.

- Blender's plain glTF importer (no add-on): the import succeeds and the `captured` variant
  shows the unlit fallback texture, untouched by the extension.
- The add-on's importer on version 1.1 materials with an `environment` (LOD0 `nv`, LOD1
  `sh2_reflected`, LOD2 `sh2_reflected_nv`, each with its own random-byte environment whose
  dequantised values span about [-3, 3]): Cycles renders of the captured look against the
  reference decoder (`render_primitive(..., "neural")` in a torch subprocess,
  neural_reference.py) at the spec's 30 dB, from three cameras; the capture camera's mirrored
  directions cross the environment's u seam (the texels either side of it are blended across
  the wrap). The same pixels decoded with the environment ignored, mirrored in u, flipped in v or
  turned half a turn miss the bar by far, so the bar checks the lookup.
- Malformed environments (bad or missing texture reference, undecodable image, wrong last layer,
  a view encoding that is not mirrored, bad scale) warn and leave the unlit fallback on the
  materials concerned only; the images they brought are not left behind.
"""
from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import addon_fixtures as fx
from addon_fixtures import read_glb_json, write_glb_json
from nrconvert.export.glb import write_glb
from nrconvert.export.neural import Layer, NeuralMaterial
from nrconvert.export.reader import read_glb
from test_addon_neural import (EXACT, SPEC_PSNR, WRONG_PSNR, compare, eevee_problem, look_at, psnr, render,
                               setup_cycles, setup_eevee, write_with_reference)

addon, addon_import, addon_installed, addon_zip = fx.addon, fx.addon_import, fx.addon_installed, fx.addon_zip

REPO = Path(__file__).resolve().parents[1]
NEURAL = "NRC_neural_material"
ENCODINGS = ("nv", "sh2_reflected", "sh2_reflected_nv")  # LOD k's material
# Near the poles u hangs on the last bits of the mirrored direction (float32 in Cycles), and the
# pole rows' texels differ by up to 255 bytes: there a few pixels per view miss 2e-3 (0.2-5e-2)
EXACT_FRACTION = 0.97


def _material(size: int, seed: int) -> NeuralMaterial:
    rng = np.random.default_rng(seed)
    dims = (17, 12, 12, 3)
    layers = [Layer(rng.normal(size=(b, a)).astype(np.float32), rng.normal(size=b).astype(np.float32),
                    "relu" if i < 2 else "sigmoid") for i, (a, b) in enumerate(zip(dims[:-1], dims[1:]))]
    return NeuralMaterial(rng.integers(0, 256, (size, size, 8), dtype=np.uint8),
                          np.ones(8, np.float32), np.zeros(8, np.float32), layers)


@pytest.fixture
def imported(tmp_path: Path, import_glb):
    spec = importlib.util.spec_from_file_location("_nrconvert_pbr_samples_neural",
                                                  REPO / "tests" / "test_export_pbr.py")
    samples = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(samples)
    asset = samples.make_pbr_asset()
    for k, lod in enumerate(asset.lods):
        lod.maps.neural = _material(16, k)
    path = tmp_path / "neural.glb"
    write_glb(asset, path, version="0.1.0-blender-test")
    assert "NRC_neural_material" in read_glb(path).doc["extensionsUsed"]
    objects = import_glb(path)
    return asset, {o.name: o for o in objects}, samples.NAME


def test_plain_importer_shows_the_unlit_fallback(imported, blender_utils, blender_scene):
    bpy = blender_scene
    asset, objects, name = imported
    scene = bpy.data.scenes[0]
    assert [v.name for v in scene.gltf2_KHR_materials_variants_variants] == ["captured"]
    scene.gltf2_active_variant = 0
    assert bpy.ops.scene.gltf2_display_variant() == {"FINISHED"}
    for k, lod in enumerate(asset.lods):
        mat = objects[f"{name}_LOD{k}"].material_slots[0].material
        assert mat.name == f"captured_LOD{k}"
        images = blender_utils.shader_image_nodes(mat)
        assert len(images) == 1  # the feature textures are data for our decoders, not wired here
        np.testing.assert_array_equal(blender_utils.image_rgb8(images[0].image), lod.maps.captured)


# ---------------------------------------------------------------- version 1.1: the environment

@pytest.fixture(scope="module")
def env_asset(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The GLB (capture camera looking along +Y, one far around and above, one below), and the
    reference renders of every LOD from every camera."""
    samples = fx.pbr_samples()
    asset = samples.make_pbr_asset()
    for k, encoding in enumerate(ENCODINGS):
        asset.lods[k].maps.neural = fx.neural_env_material(seed=20 + k, encoding=encoding)
    asset.cameras.append(look_at(samples.CENTER + [1.4, 1.8, 1.5], samples.CENTER))
    asset.cameras.append(look_at(samples.CENTER + [-1.2, 1.6, -1.4], samples.CENTER))
    folder = tmp_path_factory.mktemp("neural_env_glb")
    path, ref = write_with_reference(asset, folder / f"{samples.NAME}.glb", "0.1.0-neural-env-test")
    return SimpleNamespace(asset=asset, path=path, name=samples.NAME, ref=ref)


def _lookups(mat: NeuralMaterial, ref: dict, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Per covered pixel of the reference: (the bilinear footprint wraps across the u seam, it
    reaches within half a texel of a pole), from the decoder's own mirrored direction."""
    from nrconvert.export.neural import equirect_uv, reflect

    dirs = ref[f"dirs{key}"] / np.linalg.norm(ref[f"dirs{key}"], axis=1, keepdims=True)
    uv = equirect_uv(reflect(dirs, ref[f"normals{key}"]))
    h, w = mat.environment.shape[:2]
    x, y = uv[:, 0] * w - 0.5, uv[:, 1] * h - 0.5
    return (x < 0) | (x > w - 1), (y < 0) | (y > h - 1)


def _pixels(ref: dict, key: str, per_pixel: np.ndarray) -> np.ndarray:
    out = np.zeros(ref[f"hit{key}"].shape, bool)
    out[ref[f"hit{key}"]] = per_pixel
    return out


def test_environment_renders_match_the_reference(addon, addon_import, env_asset, tmp_path: Path):
    """File › Import › nrconvert asset, each LOD's captured look rendered by Cycles from each
    camera: >= 30 dB and nearly every pixel within 2e-3 of the reference (the others are next to
    the poles, see EXACT_FRACTION); the pixels whose lookup wraps around the u seam (about a
    hundred from the capture camera) and those within half a texel of a pole hold the 30 dB too."""
    bpy = addon.bpy
    out = addon_import(env_asset.path, import_cameras=True, use_world=False, lod_mode="MANUAL")
    assert out.result == {"FINISHED"} and out.messages == [], out.messages
    nodes = addon.submodule("neural_nodes")
    root = bpy.context.scene.nrconvert.asset
    cameras = sorted((o for o in bpy.data.objects if o.type == "CAMERA"), key=lambda o: o.name)
    assert len(cameras) == 3
    setup_cycles(bpy.context.scene, 128, 96)
    found, seam_pixels = {}, 0
    for k, level in enumerate(root.nrconvert.lods):
        material = level.captured_material
        group = nodes.neural_group_node(material)
        taps = [group.node_tree.nodes[name] for name in nodes.ENVIRONMENT_NODES]
        assert {(t.image, t.interpolation, t.extension) for t in taps} == {(taps[0].image, "Closest", "REPEAT")}
        assert taps[0].image.colorspace_settings.name == "Non-Color"
        level.object.material_slots[0].material = material
        root.nrconvert.manual_level = k
        mat = env_asset.asset.lods[k].maps.neural
        for i, cam in enumerate(cameras):
            key = f"{k}_{i}"
            rgb, alpha = render(bpy, cam, tmp_path / f"env{key}.png")
            value, exact, mask = compare(env_asset.ref, key, rgb, alpha)
            seam, pole = (_pixels(env_asset.ref, key, p) & mask for p in _lookups(mat, env_asset.ref, key))
            want = np.clip(env_asset.ref[f"img{key}"], 0, 1)
            label = f"LOD{k} {mat.view_encoding} camera {i}"
            found[label] = {"dB": round(value, 2), "within": round(exact, 4), "seam px": int(seam.sum()),
                            "pole px": int(pole.sum())}
            assert value >= SPEC_PSNR and exact >= EXACT_FRACTION, (label, found[label])
            for name, where in (("seam", seam), ("pole", pole)):
                if where.sum():
                    found[label][f"{name} dB"] = part = round(psnr(rgb[where], want[where]), 2)
                    assert part >= SPEC_PSNR, (label, name, found[label])
            seam_pixels += int(seam.sum()) if i == 0 else 0
    assert seam_pixels >= 3 * 20, found  # the capture camera looks at the seam
    print("environment, Cycles vs reference, fraction within", EXACT, found)


def test_look_panel_names_the_neural_images(addon, addon_import, env_asset):
    """The Look panel's lines for each level's captured material: the decoder and the images it
    reads, the environment being the very image the node group samples; a removed image reads
    'missing' (an export would then drop the extension)."""
    bpy = addon.bpy
    assert addon_import(env_asset.path, use_world=False, lod_mode="MANUAL").result == {"FINISHED"}
    nodes, looks = addon.submodule("neural_nodes"), addon.submodule("looks")
    root = bpy.context.scene.nrconvert.asset
    for k, level in enumerate(root.nrconvert.lods):
        material = level.captured_material
        tap = nodes.neural_group_node(material).node_tree.nodes[nodes.ENVIRONMENT_NODES[0]]
        assert material.nrconvert.environment_image == tap.image
        h, w = env_asset.asset.lods[k].maps.neural.environment.shape[:2]
        lines = looks.neural_summary(material)
        assert lines[0] == f"Neural: {ENCODINGS[k]} + environment" and len(lines) == 4, lines
        assert lines[3] == f"Environment: {tap.image.name} ({w} x {h})", lines
    panel = looks.asset_neural_summary(root)
    assert panel[0] == f"{root.nrconvert.lods[0].object.name}: Neural: {ENCODINGS[0]} + environment", panel
    material.nrconvert.environment_image = None
    assert looks.neural_summary(material)[3] == "Environment: missing"


def test_environment_in_eevee(addon, addon_import, env_asset, tmp_path: Path):
    """The same group in EEVEE (Mesa's software OpenGL on a CI box): the spec's 30 dB for every
    LOD at the capture camera and for LOD0 at the other two. Four Closest lookups blended by
    hand, as in Cycles: one Linear lookup gave 15-21 dB here (EEVEE filters it through mipmaps)."""
    problem = eevee_problem()
    if problem:
        pytest.skip(f"EEVEE cannot render on this machine: {problem}")
    bpy = addon.bpy
    assert addon_import(env_asset.path, import_cameras=True, use_world=False, lod_mode="MANUAL").result == {"FINISHED"}
    root = bpy.context.scene.nrconvert.asset
    cameras = sorted((o for o in bpy.data.objects if o.type == "CAMERA"), key=lambda o: o.name)
    setup_eevee(bpy, bpy.context.scene, 128, 96)
    found = {}
    for k, level in enumerate(root.nrconvert.lods):
        level.object.material_slots[0].material = level.captured_material
        root.nrconvert.manual_level = k
        for i, cam in enumerate(cameras if k == 0 else cameras[:1]):
            rgb, alpha = render(bpy, cam, tmp_path / f"eevee{k}_{i}.png")
            value, exact, _ = compare(env_asset.ref, f"{k}_{i}", rgb, alpha)
            found[f"LOD{k} camera {i}"] = (round(value, 2), round(exact, 4))
            assert value >= SPEC_PSNR, (k, i, found)
    print("environment, EEVEE vs reference, PSNR dB and fraction within", EXACT, found)


def test_wrong_environment_lookups_miss_the_bar(env_asset):
    """The reference pixels decoded with the environment ignored (e = 0), mirrored in u, flipped
    in v or turned half a turn (u + 0.5) are far from the reference: the 30 dB bar checks the
    lookup, and the environment matters to the colour."""
    from nrconvert.export.neural import decode

    ref, found = env_asset.ref, {}
    for k in range(len(ENCODINGS)):
        mat = env_asset.asset.lods[k].maps.neural
        env = mat.environment
        wrong = {"ignored": dict(env_scale=np.zeros(3, np.float32), env_offset=np.zeros(3, np.float32)),
                 "u mirrored": dict(environment=env[:, ::-1]), "v flipped": dict(environment=env[::-1]),
                 "half a turn": dict(environment=np.roll(env, env.shape[1] // 2, axis=1))}
        for i in range(len(env_asset.asset.cameras)):
            key = f"{k}_{i}"
            uv, dirs, normals = ref[f"uv{key}"], ref[f"dirs{key}"], ref[f"normals{key}"]
            img = np.clip(ref[f"img{key}"][ref[f"hit{key}"]], 0, 1)
            np.testing.assert_allclose(decode(mat, uv, dirs, normals), img, atol=1e-6)
            for name, change in wrong.items():
                other = copy.copy(mat)
                other.__dict__.update(change)
                found[f"LOD{k} camera {i} {name}"] = value = round(psnr(decode(other, uv, dirs, normals), img), 2)
                assert value < WRONG_PSNR, f"LOD{k} camera {i}, environment {name}: {value} dB"
    print("wrong environment lookups, PSNR dB:", found)


def _bad_env(fn):
    """A case editing every material's extension that has an environment: fn(ext) -> ext."""
    def edit(doc, binary):
        for m in doc["materials"]:
            ext = m.get("extensions", {}).get(NEURAL)
            if ext is not None and "environment" in ext:
                m["extensions"][NEURAL] = fn(ext)
        return doc, binary
    return edit


def _set_env(key, value):
    return _bad_env(lambda ext: (ext["environment"].__setitem__(key, value), ext)[1])


def _corrupt_env_png(doc, binary):
    binary = bytearray(binary)
    ext = next(m["extensions"][NEURAL] for m in doc["materials"] if NEURAL in m.get("extensions", {}))
    texture = doc["textures"][ext["environment"]["texture"]["index"]]
    view = doc["bufferViews"][doc["images"][texture["source"]]["bufferView"]]
    start = view.get("byteOffset", 0)
    binary[start:start + view["byteLength"]] = b"\x89PNG junk" + b"\0" * (view["byteLength"] - 9)
    return doc, bytes(binary)


def _three_outputs(ext):
    """The last layer cut to a and its activation made a sigmoid: a version 1 MLP, but with the
    environment still there."""
    last = ext["layers"][-1]
    last["bias"], last["weights"] = last["bias"][:3], last["weights"][:len(last["weights"]) // 2]
    last["activation"] = "sigmoid"
    return ext


def _not_mirrored(doc, binary):
    """sh2_reflected -> sh2 (the same 17 inputs): only LOD1's material is malformed."""
    for m in doc["materials"]:
        ext = m.get("extensions", {}).get(NEURAL)
        if ext is not None and ext["viewEncoding"] == "sh2_reflected":
            ext["viewEncoding"] = "sh2"
    return doc, binary


BAD_ENVIRONMENT = {  # case -> (edit(doc, binary), LODs whose material is malformed)
    "texture_index_out_of_range": (_set_env("texture", {"index": 999}), (0, 1, 2)),
    "texture_index_not_a_number": (_set_env("texture", {"index": "0"}), (0, 1, 2)),
    "texture_missing": (_bad_env(lambda ext: (ext["environment"].pop("texture"), ext)[1]), (0, 1, 2)),
    "not_an_object": (_bad_env(lambda ext: (ext.update(environment=[1, 2]), ext)[1]), (0, 1, 2)),
    "png_does_not_decode": (_corrupt_env_png, (0, 1, 2)),
    "last_layer_three_outputs": (_bad_env(_three_outputs), (0, 1, 2)),
    "last_layer_not_linear": (_bad_env(lambda ext: (ext["layers"][-1].update(activation="sigmoid"), ext)[1]),
                              (0, 1, 2)),
    "scale_too_short": (_set_env("scale", [1.0, 2.0]), (0, 1, 2)),
    "offset_not_numbers": (_set_env("offset", ["a", "b", "c"]), (0, 1, 2)),  # (NaN: Blender refuses the file)
    "encoding_not_mirrored": (_not_mirrored, (1,)),
}


@pytest.fixture(scope="module")
def env_glb(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A 3-LOD asset whose materials share one environment (LOD k: ENCODINGS[k])."""
    asset = fx.make_asset()
    shared = fx.neural_env_material(size=16, seed=7)
    for k, encoding in enumerate(ENCODINGS):
        mat = fx.neural_env_material(size=16, seed=30 + k, encoding=encoding)
        mat.environment = shared.environment
        asset.lods[k].maps.neural = mat
    path = tmp_path_factory.mktemp("env_malformed") / f"{fx.pbr_samples().NAME}.glb"
    write_glb(asset, path, version=fx.GLB_VERSION)
    return SimpleNamespace(asset=asset, path=path)


@pytest.mark.parametrize("case", sorted(BAD_ENVIRONMENT))
def test_bad_environment_warns_and_falls_back(case, env_glb, addon, addon_import, blender_utils):
    bpy, nodes = addon.bpy, addon.submodule("neural_nodes")
    edit, bad = BAD_ENVIRONMENT[case]
    doc, binary = edit(*map(copy.deepcopy, read_glb_json(env_glb.path)))
    out = addon_import(write_glb_json(env_glb.path.with_name(f"{case}.glb"), doc, binary))
    assert out.result == {"FINISHED"}
    warnings = [text for level, text in out.messages if level == "WARNING"]
    assert len(warnings) == len(bad) and all(NEURAL in w for w in warnings), out.messages
    for k, level in enumerate(bpy.context.scene.nrconvert.asset.nrconvert.lods):
        mat = level.captured_material
        if k in bad:
            assert mat.nrconvert.neural_json == "" and mat.nrconvert.environment_image is None
            assert nodes.neural_group_node(mat) is None
            (image,) = blender_utils.shader_image_nodes(mat)
            np.testing.assert_array_equal(blender_utils.image_rgb8(image.image), env_glb.asset.lods[k].maps.captured)
        else:
            assert nodes.neural_group_node(mat) is not None and mat.nrconvert.environment_image is not None
    features = [im.name for im in bpy.data.images if "_features" in im.name]
    environments = [im for im in bpy.data.images if im.name.startswith("neural_environment")]
    assert len(features) == 2 * (3 - len(bad)) and len(environments) == (len(bad) < 3), (features, environments)


def test_apply_neural_needs_the_environment_image(env_glb, addon, addon_import):
    """apply_neural on a 1.1 material: without its environment image, or with an environment
    image that is not 8-bit RGB(A), ValueError and the material as it was; with it, the group
    looks the image up and a version 1 extension ignores an image it is given."""
    bpy, nodes = addon.bpy, addon.submodule("neural_nodes")
    assert addon_import(env_glb.path).result == {"FINISHED"}
    level = bpy.context.scene.nrconvert.asset.nrconvert.lods[0]
    mat, data = level.captured_material, level.captured_material.nrconvert
    env = data.environment_image
    assert tuple(env.size) == (32, 16) and env.colorspace_settings.name == "Non-Color"
    images = (data.feature_image_0, data.feature_image_1)
    doc, _ = read_glb_json(env_glb.path)
    ext = next(m["extensions"][NEURAL] for m in doc["materials"] if m["name"] == mat.name)
    float_image = bpy.data.images.new("float_env", 32, 16, float_buffer=True)
    nodes.use_neural(mat, False)
    before = sorted(n.name for n in mat.node_tree.nodes)
    group_tree = nodes.neural_group_node(mat).node_tree
    for bad in (None, float_image):
        with pytest.raises(ValueError):
            nodes.apply_neural(mat, ext, images, bad)
        assert sorted(n.name for n in mat.node_tree.nodes) == before
        assert nodes.neural_group_node(mat).node_tree == group_tree
    nodes.apply_neural(mat, ext, images, env)
    assert {nodes.neural_group_node(mat).node_tree.nodes[name].image for name in nodes.ENVIRONMENT_NODES} == {env}
    version1 = {k: v for k, v in json.loads(json.dumps(ext)).items() if k != "environment"}
    width = len(version1["layers"][-2]["bias"])  # the last layer's inputs
    version1["layers"][-1].update(activation="sigmoid", bias=version1["layers"][-1]["bias"][:3],
                                  weights=version1["layers"][-1]["weights"][:3 * width])
    nodes.apply_neural(mat, version1, images, env)
    assert not set(nodes.ENVIRONMENT_NODES) & set(nodes.neural_group_node(mat).node_tree.nodes.keys())
