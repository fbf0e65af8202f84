"""A GLB with NRC_neural_material through Blender's plain glTF importer (no add-on): the import
succeeds and the `captured` variant shows the unlit fallback texture, untouched by the extension."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from nrconvert.export.glb import write_glb
from nrconvert.export.neural import Layer, NeuralMaterial
from nrconvert.export.reader import read_glb

REPO = Path(__file__).resolve().parents[1]


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
