"""The extension zip as a user gets it: build_addon.py writes it, Blender installs it from disk
into the (throw-away) user extension repo and enables it; every feature module registers, the
import operator and its File › Import entry exist, and nothing in the add-on needs torch,
nrconvert, PIL or pygltflib (Blender has none of them)."""
from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import addon_fixtures as fx
from addon_fixtures import ADDON_MODULE, REPO, build_addon_module, write_asset_glb

addon, addon_installed, addon_zip = fx.addon, fx.addon_installed, fx.addon_zip  # fixtures

FORBIDDEN = ("torch", "nrconvert", "PIL", "pygltflib")


def test_zip_layout_and_vendored_sources(addon_zip: Path):
    with zipfile.ZipFile(addon_zip) as zf:
        names = set(zf.namelist())
        assert "blender_manifest.toml" in names and "__init__.py" in names  # flat, as Blender wants
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        for name, source in build_addon_module().VENDORED.items():
            assert zf.read(f"_vendor/{name}").decode() == source.read_text(), name
        sources = {n: zf.read(n).decode() for n in names if n.endswith(".py")}
    shipped = {p.relative_to(REPO / "addon").as_posix() for p in (REPO / "addon").rglob("*.py")
               if "__pycache__" not in p.parts and "_vendor" not in p.parts}
    assert shipped <= set(sources), shipped - set(sources)
    for name, text in sources.items():
        for node in ast.walk(ast.parse(text, name)):
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not roots & set(FORBIDDEN), f"{name}:{node.lineno} imports {roots & set(FORBIDDEN)}"


def test_build_refuses_a_torch_import():
    build = build_addon_module()
    assert build.forbidden_imports("import numpy\nfrom torch import nn\ndef f():\n    import nrconvert.cli\n") \
        == ["torch", "nrconvert"]
    assert build.forbidden_imports("from . import neural\nfrom ._vendor import frames\n") == []


def test_installed_and_every_module_registered(addon):
    bpy, package = addon.bpy, addon.module
    assert Path(package.__file__).parent == addon.directory
    assert (addon.directory / "_vendor" / "neural.py").is_file()
    with zipfile.ZipFile(addon.zip) as zf:
        in_zip = {Path(n).stem for n in zf.namelist() if "/" not in n and n.endswith(".py")}
    expected = [name for name in package.MODULES if name in in_zip]
    assert {"properties", "importer", "lod", "exporter"} <= set(expected)
    registered = [m.__name__.rsplit(".", 1)[1] for m in package._loaded]
    assert registered == [n for n in expected if hasattr(sys.modules[f"{ADDON_MODULE}.{n}"], "register")]
    assert {"properties", "importer", "lod", "exporter"} <= set(registered)
    assert bpy.ops.import_scene.nrconvert_glb.get_rna_type().name
    drawn = [getattr(f, "__module__", "") for f in bpy.types.TOPBAR_MT_file_import._dyn_ui_initialize()]
    assert f"{ADDON_MODULE}.importer" in drawn
    # the glTF add-on finds our hooks on the package's top level
    assert hasattr(package, "glTF2ImportUserExtension") and hasattr(package, "glTF2ExportUserExtension")


def test_disable_and_enable_again(addon):
    import addon_utils as blender_addon_utils

    bpy = addon.bpy
    blender_addon_utils.disable(ADDON_MODULE, default_set=True)
    assert ADDON_MODULE not in bpy.context.preferences.addons
    assert not hasattr(bpy.ops.import_scene, "nrconvert_glb") or \
        not _operator_exists(bpy, "IMPORT_SCENE_OT_nrconvert_glb")
    blender_addon_utils.enable(ADDON_MODULE, default_set=True)
    assert _operator_exists(bpy, "IMPORT_SCENE_OT_nrconvert_glb")


def _operator_exists(bpy, idname: str) -> bool:
    return getattr(bpy.types, idname, None) is not None


_CHILD = textwrap.dedent("""
    import importlib.abc, os, sys, tempfile
    BLOCKED = {blocked!r}

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"blocked: {{name}}")
            return None

    sys.meta_path.insert(0, Block())
    os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp()
    import bpy
    assert bpy.ops.extensions.package_install_files(
        filepath={zip!r}, repo="user_default", enable_on_install=True) == {{"FINISHED"}}
    assert {module!r} in bpy.context.preferences.addons
    result = bpy.ops.import_scene.nrconvert_glb(filepath={glb!r})
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    print("RESULT", sorted(result), "LOADED", loaded, "OBJECTS", len(bpy.data.objects), flush=True)
    if bpy.app.version < (5, 0, 0):  # bpy 4.x crashes at interpreter exit: see farm_common.exit_process
        os._exit(0)
""")


def test_enable_and_import_with_torch_and_nrconvert_blocked(addon_zip: Path, tmp_path: Path):
    """A fresh Blender in which importing torch, nrconvert, PIL or pygltflib fails: the add-on
    still installs, enables and imports a neural GLB (so none of them is needed at runtime)."""
    _, glb = write_asset_glb(tmp_path / "asset.glb")
    code = _CHILD.format(blocked=FORBIDDEN, zip=str(addon_zip), module=ADDON_MODULE, glb=str(glb))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")]
    assert line, out.stdout[-2000:]
    assert line[0].startswith("RESULT ['FINISHED'] LOADED [] OBJECTS"), line[0]
    assert int(line[0].rsplit(" ", 1)[1]) >= 3
