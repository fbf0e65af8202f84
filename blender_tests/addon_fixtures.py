"""Fixtures for the add-on tests (blender_tests/addon_fixtures.py): build the extension zip, install it into the throw-away Blender
user resources (conftest.py points BLENDER_USER_RESOURCES there), enable it, and write test GLBs.

Use from a test module by assigning the fixtures to module names (pytest collects fixtures from
module attributes; an assignment, unlike an import, lets test arguments share the name without
ruff's F811):

    import addon_fixtures as fx
    addon, addon_import, addon_installed, addon_zip = (
        fx.addon, fx.addon_import, fx.addon_installed, fx.addon_zip)

`addon` needs `addon_installed` and `addon_zip` visible in the module too (fixtures resolve
their own dependencies by name). Not named addon_utils.py: that is
Blender's own module, and a test-side module of that name imported before bpy starts replaces
Blender's (its add-on and extension machinery then breaks). The zip is built and installed once per
session, the way a user installs it ("Install from Disk" = `extensions.package_install_files`);
`addon` then gives each test factory settings with an empty scene and the add-on enabled
(factory settings disable user add-ons, so it is enabled again every time).

Test GLBs come from nrconvert's own exporter (`write_glb`) with tests/test_export_pbr.py's
`make_pbr_asset()` (3 LODs, PBR maps, captured variant, one capture camera, an environment .hdr)
plus a numpy-built NRC_neural_material per LOD: all torch-free, so they load in this process.
"""
from __future__ import annotations

import importlib.util
import json
import struct
import sys
from functools import lru_cache
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, Callable

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
REPO_NAME = "user_default"
ADDON_ID = "nrconvert"
ADDON_MODULE = f"bl_ext.{REPO_NAME}.{ADDON_ID}"
GLB_VERSION = "0.1.0-addon-test"


def _load_by_path(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@lru_cache(maxsize=None)
def build_addon_module() -> ModuleType:
    """build_addon.py (repo root) as a module: build(), forbidden_imports(), VENDORED, ..."""
    return _load_by_path("_nrconvert_build_addon", REPO / "build_addon.py")


@lru_cache(maxsize=None)
def pbr_samples() -> ModuleType:
    """tests/test_export_pbr.py loaded by path (its make_pbr_asset, NAME, COVERAGE, ...)."""
    return _load_by_path("_nrconvert_pbr_samples_addon", REPO / "tests" / "test_export_pbr.py")


def neural_material(size: int, seed: int):
    """A random but valid 17-12-12-3 NRC_neural_material with (size, size, 8) features."""
    from nrconvert.export.neural import Layer, NeuralMaterial

    rng = np.random.default_rng(seed)
    dims = (17, 12, 12, 3)
    layers = [Layer(rng.normal(size=(b, a)).astype(np.float32), rng.normal(size=b).astype(np.float32),
                    "relu" if i < 2 else "sigmoid") for i, (a, b) in enumerate(zip(dims[:-1], dims[1:]))]
    scale = rng.uniform(0.5, 2.0, 8).astype(np.float32)
    offset = rng.uniform(-1.0, 0.0, 8).astype(np.float32)
    return NeuralMaterial(rng.integers(0, 256, (size, size, 8), dtype=np.uint8), scale, offset, layers)


def neural_env_material(size: int = 32, seed: int = 0, encoding: str = "nv", env_shape=(16, 32)):
    """A valid NRC_neural_material 1.1 with an environment: smooth features (low-frequency
    sinusoids, bytes 0 and 255 in every channel), an MLP whose last layer is linear (a, b), b near
    1 (bias) so that sigmoid(a + b * e) follows e: with `nv` 9 -> 28 -> 6 as the pipeline writes it,
    otherwise (8 + encoding) -> 12 -> 12 -> 6, and a
    random-byte equirect environment (`env_shape`, rows x columns) dequantised to about [-3, 3]:
    every texel, seam and pole row shows."""
    from nrconvert.export.neural import VIEW_ENCODINGS, Layer, NeuralMaterial

    rng = np.random.default_rng(seed)
    y, x = (np.mgrid[0:size, 0:size] + 0.5) / size
    waves = [0.5 + 0.6 * np.sin(2 * np.pi * (a * x + b * y) + c) for a, b, c in rng.uniform(-2, 2, (8, 3))]
    feats = np.rint(np.clip(np.stack(waves, -1), 0, 1) * 255).astype(np.uint8)
    hidden = (28,) if encoding == "nv" else (12, 12)
    dims = (8 + VIEW_ENCODINGS[encoding], *hidden, 6)
    last = len(dims) - 2
    layers = [Layer((rng.normal(size=(o, i)) * (0.8 if k < last else 0.25) / np.sqrt(3)).astype(np.float32),
                    (rng.normal(size=o) * 0.3).astype(np.float32), "relu" if k < last else "linear")
              for k, (i, o) in enumerate(zip(dims[:-1], dims[1:]))]
    layers[-1].bias[3:] += 1.0
    env = rng.integers(0, 256, (*env_shape, 3), dtype=np.uint8)
    return NeuralMaterial(feats, np.full(8, 2.0, np.float32), np.full(8, -1.0, np.float32), layers, encoding,
                          environment=env, env_scale=np.float32([6.0, 5.0, 4.0]),
                          env_offset=np.float32([-3.0, -2.5, -2.0]))


def make_asset(neural: bool = True, light: bool = True):
    """make_pbr_asset() (3 LODs, coverage 0.4/0.1/0.0, one camera) with a neural material per LOD."""
    asset = pbr_samples().make_pbr_asset(with_light=light)
    if neural:
        for k, lod in enumerate(asset.lods):
            lod.maps.neural = neural_material(16, k)
    return asset


def write_asset_glb(path: Path, neural: bool = True, light: bool = True):
    """(asset, path): make_asset() written by nrconvert's exporter (the .hdr beside it)."""
    from nrconvert.export.glb import write_glb

    asset = make_asset(neural=neural, light=light)
    write_glb(asset, Path(path), version=GLB_VERSION)
    return asset, Path(path)


def read_glb_json(path: Path) -> tuple[dict, bytes]:
    """(JSON document, BIN chunk) of a GLB, with no checks beyond the container layout."""
    data = Path(path).read_bytes()
    n_json = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(data[20:20 + n_json])
    at = 20 + n_json
    binary = data[at + 8:at + 8 + struct.unpack_from("<I", data, at)[0]] if at + 8 <= len(data) else b""
    return doc, binary


def write_glb_json(path: Path, doc: dict, binary: bytes) -> Path:
    """Repack a (possibly doctored) document and BIN chunk as a GLB (for malformed-file tests)."""
    text = json.dumps(doc, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    binary = bytes(binary) + b"\0" * (-len(binary) % 4)
    body = struct.pack("<I4s", len(text), b"JSON") + text
    if binary:
        body += struct.pack("<I4s", len(binary), b"BIN\0") + binary
    Path(path).write_bytes(struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body)
    return Path(path)


def addon_package(bpy: ModuleType) -> ModuleType:
    """The enabled add-on's top-level module (bl_ext.user_default.nrconvert)."""
    assert ADDON_MODULE in bpy.context.preferences.addons, sorted(bpy.context.preferences.addons.keys())
    return sys.modules[ADDON_MODULE]


def addon_submodule(name: str) -> ModuleType | None:
    """`bl_ext.user_default.nrconvert.<name>` if the add-on has that module, else None."""
    return sys.modules.get(f"{ADDON_MODULE}.{name}")


def enable_addon(bpy: ModuleType) -> ModuleType:
    import addon_utils as blender_addon_utils  # Blender's own module of the same name

    if ADDON_MODULE not in bpy.context.preferences.addons:
        module = blender_addon_utils.enable(ADDON_MODULE, default_set=True, handle_error=_raise)
        assert module is not None, f"enabling {ADDON_MODULE} failed"
    return addon_package(bpy)


def _raise(exc: BaseException) -> None:
    raise exc


@pytest.fixture(scope="session")
def addon_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The extension zip, built by build_addon.py into a temporary folder."""
    path = build_addon_module().build(tmp_path_factory.mktemp("addon_dist"))
    assert path.is_file()
    return path


@pytest.fixture(scope="session")
def addon_installed(bpy: ModuleType, addon_zip: Path) -> SimpleNamespace:
    """Install the zip into the user_default extension repo and enable it (once per session)."""
    result = bpy.ops.extensions.package_install_files(
        filepath=str(addon_zip), repo=REPO_NAME, enable_on_install=True, overwrite=True)
    assert result == {"FINISHED"}, result
    module = enable_addon(bpy)
    return SimpleNamespace(zip=addon_zip, module_name=ADDON_MODULE, module=module,
                           directory=Path(module.__file__).parent)


@pytest.fixture
def addon(addon_installed: SimpleNamespace, bpy: ModuleType) -> SimpleNamespace:
    """Factory settings, empty scene, the add-on enabled: SimpleNamespace(bpy, module, zip,
    module_name, directory, submodule(name))."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    module = enable_addon(bpy)
    return SimpleNamespace(bpy=bpy, module=module, zip=addon_installed.zip,
                           module_name=ADDON_MODULE, directory=addon_installed.directory,
                           submodule=addon_submodule)


@pytest.fixture
def addon_import(addon: SimpleNamespace) -> Callable[..., SimpleNamespace]:
    """`addon_import(path, **options)` runs File › Import › nrconvert asset and returns
    SimpleNamespace(result, objects (new, by name), messages [(level, text)] the operator
    reported).

    bpy.ops turns an operator's ERROR report into a RuntimeError carrying the report's text even
    though the operator itself returned CANCELLED; that is taken as result {'CANCELLED'} here. A
    Python exception escaping the operator is a RuntimeError with a traceback: re-raised."""
    bpy = addon.bpy

    def _import(path: Path | str, **options: Any) -> SimpleNamespace:
        before = set(bpy.data.objects)
        try:
            result = bpy.ops.import_scene.nrconvert_glb(filepath=str(path), **options)
        except RuntimeError as exc:
            if "Traceback" in str(exc):
                raise
            result = {"CANCELLED"}
        importer = addon_submodule("importer")
        messages = list(getattr(importer, "last_messages", []))
        new = {o.name: o for o in bpy.data.objects if o not in before}
        return SimpleNamespace(result=result, objects=new, messages=messages)

    return _import


@pytest.fixture
def asset_glb(tmp_path: Path) -> tuple[Any, Path]:
    """(asset, path) of make_asset() written to tmp_path/<NAME>.glb (with neural + light)."""
    return write_asset_glb(tmp_path / f"{pbr_samples().NAME}.glb")
