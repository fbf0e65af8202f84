"""Fixtures for tests that run inside real Blender (bpy imported in the pytest process).

Run these in their own pytest invocation (`pytest blender_tests`): bpy and torch must not share a
process. So test modules here never import bpy (or anything that imports torch) at module level;
they take the `bpy` fixture, which skips when bpy is missing or torch is already loaded.

`BLENDER_USER_RESOURCES` points at a throw-away folder before bpy is first imported, so add-on
installs and preferences never leak into the user's Blender config or between runs, and every test
starts from factory settings with an empty scene (`blender_scene`).

For GLBs from the full pipeline: `import_glb(path)` returns the imported objects, and
`blender_utils` holds numpy helpers (world vertices, triangle counts, shader image nodes, ...).
"""
from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, Callable

import numpy as np
import pytest

_USER_RESOURCES = tempfile.mkdtemp(prefix="nrconvert-blender-user-")
_SESSION: dict[str, pytest.Session] = {}
os.environ["BLENDER_USER_RESOURCES"] = _USER_RESOURCES  # read once, when bpy starts
REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.blender)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_USER_RESOURCES, ignore_errors=True)
    _SESSION["session"] = session


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """With bpy 4.x as a module, interpreter exit after a glTF import or an add-on install
    crashes (SIGSEGV; see nrconvert.synth._runner.bpy_exit_crashes), which would turn a green run
    into exit code 139. The process then ends from an atexit callback with pytest's own status,
    once everything else pytest and Python do at exit has run."""
    session = _SESSION.get("session")
    if session is None or "bpy" not in sys.modules:
        return
    from nrconvert.synth._runner import bpy_exit_crashes, exit_bpy_process

    if bpy_exit_crashes():
        atexit.register(exit_bpy_process, int(session.exitstatus))


@pytest.fixture(scope="session")
def bpy() -> ModuleType:
    """The bpy module, or a skip saying why it cannot be used in this process."""
    if "torch" in sys.modules:
        pytest.skip("torch is loaded in this process; run `pytest blender_tests` on its own")
    return pytest.importorskip("bpy", reason="needs bpy (pip install 'nrconvert[blender]')")


@pytest.fixture
def blender_scene(bpy: ModuleType) -> ModuleType:
    """Factory settings with an empty scene (bundled add-ons such as the glTF importer stay on)."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return bpy


@pytest.fixture
def import_glb(blender_scene: ModuleType) -> Callable[..., list[Any]]:
    """`import_glb(path, **importer_options) -> [new objects]`, via Blender's own glTF importer."""
    bpy = blender_scene

    def _import(path: Path | str, **options: Any) -> list[Any]:
        path = Path(path)
        assert path.is_file(), f"no GLB at {path}"
        before = set(bpy.data.objects)
        result = bpy.ops.import_scene.gltf(filepath=str(path), **options)
        assert result == {"FINISHED"}, f"glTF import of {path} returned {result}"
        return sorted((o for o in bpy.data.objects if o not in before), key=lambda o: o.name)

    return _import


def matrix_world(obj: Any) -> np.ndarray:
    """Object's world matrix as a (4, 4) float64 array."""
    return np.array(obj.matrix_world, dtype=np.float64)


def world_vertices(obj: Any) -> np.ndarray:
    """(V, 3) world-space vertex positions of a mesh object."""
    co = np.empty(len(obj.data.vertices) * 3, dtype=np.float32)
    obj.data.vertices.foreach_get("co", co)
    m = matrix_world(obj)
    return co.reshape(-1, 3).astype(np.float64) @ m[:3, :3].T + m[:3, 3]


def triangle_count(obj: Any) -> int:
    """Triangles of a mesh object after Blender's own triangulation of its polygons."""
    obj.data.calc_loop_triangles()
    return len(obj.data.loop_triangles)


def loop_uvs(obj: Any, layer: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(world position, Blender UV) per face corner; Blender UVs have v up (glTF: 1 - v)."""
    me = obj.data
    uv = np.empty(len(me.loops) * 2, dtype=np.float32)
    me.uv_layers[layer].data.foreach_get("uv", uv)
    vi = np.empty(len(me.loops), dtype=np.int64)
    me.loops.foreach_get("vertex_index", vi)
    return world_vertices(obj)[vi], uv.reshape(-1, 2).astype(np.float64)


def upstream_nodes(node_tree: Any, node: Any) -> list[Any]:
    """Every node whose output reaches `node` through links (depth first, no duplicates)."""
    seen: list[Any] = []
    stack = [node]
    while stack:
        current = stack.pop()
        for link in node_tree.links:
            if link.to_node == current and link.from_node not in seen:
                seen.append(link.from_node)
                stack.append(link.from_node)
    return seen


def shader_image_nodes(material: Any) -> list[Any]:
    """Image Texture nodes that actually feed the active Material Output's surface."""
    tree = material.node_tree
    outputs = [n for n in tree.nodes if n.type == "OUTPUT_MATERIAL" and n.is_active_output]
    assert outputs, f"material {material.name} has no active output"
    return [n for n in upstream_nodes(tree, outputs[0]) if n.type == "TEX_IMAGE"]


def image_rgb8(image: Any) -> np.ndarray:
    """(H, W, 3) uint8 of a Blender image, top row first (Blender stores bottom row first)."""
    w, h = image.size
    px = np.empty(w * h * 4, dtype=np.float32)
    image.pixels.foreach_get(px)
    rgb = px.reshape(h, w, 4)[::-1, :, :3]
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def nearest_distances(a: np.ndarray, b: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """For each row of `a`, the distance to the closest row of `b` (brute force, chunked)."""
    out = np.empty(len(a))
    for s in range(0, len(a), chunk):
        d = ((a[s:s + chunk, None, :] - b[None, :, :]) ** 2).sum(-1)
        out[s:s + chunk] = np.sqrt(d.min(1))
    return out


@pytest.fixture(scope="session")
def blender_utils() -> SimpleNamespace:
    """numpy helpers over imported Blender data (see the functions in this conftest)."""
    return SimpleNamespace(matrix_world=matrix_world, world_vertices=world_vertices,
                           triangle_count=triangle_count, loop_uvs=loop_uvs,
                           upstream_nodes=upstream_nodes, shader_image_nodes=shader_image_nodes,
                           image_rgb8=image_rgb8, nearest_distances=nearest_distances)


@pytest.fixture(scope="session")
def export_samples() -> ModuleType:
    """tests/test_export.py loaded by path: its `make_sample_asset()` is the asset the exporter
    tests check, so the Blender tests import exactly the same thing."""
    path = REPO / "tests" / "test_export.py"
    spec = importlib.util.spec_from_file_location("_nrconvert_export_samples", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
