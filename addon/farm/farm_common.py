"""Shared parts of the headless farm scripts (turntable.py, lod_sheet.py).

They run as `blender -b --python-exit-code 1 --python SCRIPT -- ARGS` or `python SCRIPT -- ARGS`
with the bpy module, so this is a plain module next to them (the scripts put their folder on
sys.path), not part of the add-on package. Exit codes: 0 done, 2 usage error, 3 unreadable input,
1 anything unexpected (an uncaught exception; Blender needs --python-exit-code 1 for that).
Every written file is announced on stdout as `Saved: PATH`, the line farms scrape.
"""
from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import math
import os
import re
import shutil
import struct
import sys
import traceback
from types import SimpleNamespace
from typing import Any, NoReturn

import bpy
from mathutils import Vector

USAGE, UNREADABLE = 2, 3
LOD_NAME = re.compile(r"^(.*)_LOD(\d+)(\.\d+)?$")


class FarmError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would exit itself; keep our codes and text
        raise FarmError(f"{message}\n{self.format_usage().strip()}", USAGE)


def script_args() -> list[str]:
    """Arguments after `--` (Blender passes its own before it), else everything after the script."""
    argv = sys.argv
    return argv[argv.index("--") + 1:] if "--" in argv else argv[1:]


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = _Parser(prog=prog, description=description)
    p.add_argument("--glb", required=True, help="nrconvert GLB to render")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--size", default="256x256", help="image size WxH")
    p.add_argument("--samples", type=int, default=16, help="Cycles samples per pixel")
    p.add_argument("--light", default="estimated",
                   help="estimated (the GLB's light) | a bundled studio HDRI (forest.exr, ...) | an HDRI path")
    p.add_argument("--look", default="pbr", choices=("pbr", "captured"),
                   help="material look (captured needs the nrconvert add-on)")
    return p


def parse(p: argparse.ArgumentParser) -> argparse.Namespace:
    args = p.parse_args(script_args())
    m = re.fullmatch(r"(\d+)x(\d+)", args.size)
    if not m or not all(4 <= int(v) <= 8192 for v in m.groups()):
        raise FarmError(f"--size must be WxH with sides 4..8192, got {args.size!r}", USAGE)
    args.width, args.height = int(m.group(1)), int(m.group(2))
    if args.samples < 1:
        raise FarmError(f"--samples must be at least 1, got {args.samples}", USAGE)
    check_glb(args.glb)
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as exc:
        raise FarmError(f"cannot create the output folder {args.out}: {exc.strerror}", USAGE) from exc
    return args


def check_glb(path: str) -> dict:
    """The GLB's JSON chunk; FarmError(3) when the file is missing or not a readable GLB."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
            magic, version, _length, n_json, kind = struct.unpack("<4sIII4s", head)
            if magic != b"glTF" or kind != b"JSON":
                raise ValueError("not a binary glTF (GLB) file")
            return json.loads(f.read(n_json))
    except FileNotFoundError as exc:
        raise FarmError(f"{path}: no such file", UNREADABLE) from exc
    except (OSError, struct.error, ValueError) as exc:
        raise FarmError(f"{path}: cannot read the GLB ({exc})", UNREADABLE) from exc


def run(main) -> None:
    """Call main(); usage and input errors print `error: ...` and exit with their code. With
    the bpy module the process then ends through exit_process (an uncaught exception too: its
    traceback, exit code 1), so bpy 4.2 cannot turn a finished run into a crash."""
    try:
        main()
    except FarmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        exit_process(exc.code)
    except Exception:
        if not _exit_crashes():
            raise  # Blender reports it (--python-exit-code 1), or Python does: exit code 1
        traceback.print_exc()
        exit_process(1)
    sys.stdout.flush()
    if _exit_crashes():
        exit_process(0)


def _exit_crashes() -> bool:
    """bpy as a Python module, version 4.x: its interpreter exit can crash (SIGSEGV). bpy 4.2
    shuts Blender down only when the `bpy` module object is freed while Python finalizes; anything
    still holding it (typing's caches of the glTF add-on's classes after a glTF import, an enabled
    add-on) keeps Blender alive past the interpreter, and its C++ static destructors then free
    Python-defined panel types with no interpreter left. Seen with 4.2.0, not with 5.0.1 (it
    shuts down from the module cleanup); in the `blender` binary Blender exits by itself.
    (nrconvert.synth._runner.exit_bpy_process is the same for the converter; the farm scripts
    cannot import nrconvert.)"""
    return not bpy.app.binary_path and tuple(bpy.app.version) < (5, 0, 0)


def exit_process(code: int) -> NoReturn:
    """Exit with `code`; where _exit_crashes(), without the interpreter teardown: atexit handlers
    run, stdio is flushed, Blender's session temp folder (its shutdown would purge it) is
    removed, then os._exit."""
    sys.stdout.flush()
    sys.stderr.flush()
    if not _exit_crashes():
        sys.exit(code)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    temp = bpy.app.tempdir
    if os.path.basename(os.path.normpath(temp)).startswith("blender_"):
        shutil.rmtree(temp, ignore_errors=True)
    os._exit(code)


# ---------------------------------------------------------------- scene and import


def _enable_addon() -> str | None:
    """The nrconvert add-on's module if installed (enabled here when it is not yet)."""
    import addon_utils

    names = [m.__name__ for m in addon_utils.modules() if m.__name__.split(".")[-1] == "nrconvert"]
    for name in names:
        if name in bpy.context.preferences.addons or addon_utils.enable(name, default_set=True):
            return name
    return None


def _has_operator(module: str, name: str) -> bool:
    try:
        getattr(getattr(bpy.ops, module), name).get_rna_type()
        return True
    except (AttributeError, KeyError):
        return False


def import_asset(path: str, use_addon: bool = True) -> SimpleNamespace:
    """Empty the scene and import the GLB: the add-on's importer when installed, else Blender's
    glTF importer. Returns (levels: LOD objects in order, root, addon module name or None)."""
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    addon = _enable_addon() if use_addon else None
    if addon and not _has_operator("import_scene", "nrconvert_glb"):
        addon = None
    before = set(bpy.data.objects)
    try:
        if addon:
            result = bpy.ops.import_scene.nrconvert_glb(filepath=os.path.abspath(path))
        else:
            result = bpy.ops.import_scene.gltf(filepath=os.path.abspath(path))
    except RuntimeError as exc:
        raise FarmError(f"{path}: import failed: {exc}", UNREADABLE) from exc
    if "FINISHED" not in result:
        raise FarmError(f"{path}: import returned {sorted(result)}", UNREADABLE)
    new = [o for o in bpy.data.objects if o not in before]
    root = next((o for o in new if getattr(getattr(o, "nrconvert", None), "is_asset", False)), None)
    levels = _levels(root, new)
    if not levels:
        raise FarmError(f"{path}: no meshes in the file", UNREADABLE)
    print(f"Importer: {'nrconvert add-on (' + addon + ')' if addon else 'Blender glTF'}")
    return SimpleNamespace(levels=levels, root=root, addon=addon, objects=new)


def _levels(root: Any, new: list) -> list:
    if root is not None and len(root.nrconvert.lods):
        return [lvl.object for lvl in root.nrconvert.lods if lvl.object is not None]
    meshes = [o for o in new if o.type == "MESH"]
    named = sorted((int(m.group(2)), o) for o in meshes if (m := LOD_NAME.match(o.name)))
    return [o for _, o in named] or meshes


def show_level(asset: SimpleNamespace, k: int) -> None:
    """Render only level k (pinned: no automatic switching while the farm renders)."""
    if asset.root is not None and len(asset.root.nrconvert.lods):
        asset.root.nrconvert.lod_mode, asset.root.nrconvert.manual_level = "MANUAL", k
    scene, layer = bpy.context.scene, bpy.context.view_layer
    for j, obj in enumerate(asset.levels):
        if obj.name not in layer.objects:  # the glTF importer leaves lower LODs in "Orphan Nodes"
            scene.collection.objects.link(obj)
        obj.hide_render = obj.hide_viewport = j != k


def set_look(asset: SimpleNamespace, look: str) -> None:
    if look == "pbr":
        return
    looks = sys.modules.get(f"{asset.addon}.looks") if asset.addon else None
    if looks is None:
        raise FarmError("--look captured needs the nrconvert add-on installed", USAGE)
    looks.set_asset_look(asset.root or asset.levels[0], "CAPTURED")


# ---------------------------------------------------------------- light, camera, render


def studio_dir() -> str:
    return bpy.utils.system_resource("DATAFILES", path=os.path.join("studiolights", "world")) or ""


def environment_file(glb: str, doc: dict) -> str | None:
    """The estimated light (.hdr beside the GLB) named in asset.extras.nrconvert, if present."""
    env = ((doc.get("asset") or {}).get("extras") or {}).get("nrconvert", {}).get("environment")
    if isinstance(env, dict) and env.get("uri"):
        path = os.path.join(os.path.dirname(os.path.abspath(glb)), str(env["uri"]))
        return path if os.path.isfile(path) else None
    return None


def setup_light(asset: SimpleNamespace, choice: str, glb: str, doc: dict) -> str:
    """World for the render; returns what lights it (for the log and the sidecar)."""
    scene = bpy.context.scene
    if choice == "estimated":
        world = scene.world
        if asset.addon and world is not None and any(n.type == "TEX_ENVIRONMENT" for n in world.node_tree.nodes):
            return "estimated (nrconvert add-on world)"
        path = environment_file(glb, doc)
        if path is None:
            print("note: the GLB has no estimated light; using the studio HDRI forest.exr")
            choice = "forest.exr"
        else:
            _environment_world(path)
            return f"estimated ({path}, capture frame not applied without the add-on)"
    path = choice if os.path.isfile(choice) else os.path.join(studio_dir(), choice)
    if not os.path.isfile(path):
        raise FarmError(f"--light: no such HDRI file or bundled studio light: {choice}", USAGE)
    _environment_world(path)
    return path


def _environment_world(path: str) -> None:
    world = bpy.data.worlds.new("farm light")
    if bpy.app.version < (5, 0, 0):
        world.use_nodes = True
    env = world.node_tree.nodes.new("ShaderNodeTexEnvironment")
    env.image = bpy.data.images.load(path, check_existing=True)
    bg = next(n for n in world.node_tree.nodes if n.type == "BACKGROUND")
    world.node_tree.links.new(env.outputs["Color"], bg.inputs["Color"])
    bpy.context.scene.world = world


def bounding_sphere(objects: list) -> tuple[Vector, float]:
    pts = [o.matrix_world @ Vector(c) for o in objects for c in o.bound_box]
    lo = Vector(map(min, zip(*pts)))
    hi = Vector(map(max, zip(*pts)))
    return (lo + hi) / 2, max((hi - lo).length / 2, 1e-6)


def make_camera(centre: Vector, radius: float, width: int, height: int) -> Any:
    """A 50 mm camera far enough for the bounding sphere to fit the frame's short side."""
    cam = bpy.data.objects.new("farm camera", bpy.data.cameras.new("farm camera"))
    bpy.context.scene.collection.objects.link(cam)
    cam.data.lens, cam.data.sensor_fit = 50.0, "AUTO"
    half = math.atan(cam.data.sensor_width / 2 / cam.data.lens) * min(width, height) / max(width, height)
    cam.data.clip_end = 1e4
    cam["distance"] = radius / math.sin(half) * 1.05
    bpy.context.scene.camera = cam
    return cam


def place_camera(cam: Any, centre: Vector, angle: float, elevation: float = math.radians(20)) -> None:
    d = cam["distance"]
    eye = centre + Vector((math.sin(angle) * math.cos(elevation), -math.cos(angle) * math.cos(elevation),
                           math.sin(elevation))) * d
    cam.location = eye
    cam.rotation_euler = (centre - eye).to_track_quat("-Z", "Y").to_euler()


def setup_render(width: int, height: int, samples: int, transparent: bool = False) -> None:
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device, scene.cycles.samples = "CPU", samples
    scene.cycles.use_denoising = False
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = transparent
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"


@contextlib.contextmanager
def _stdout_to_stderr():
    """Send what Blender itself prints (file descriptor 1) to stderr meanwhile: its render log
    holds a bare `Saved: '<path>'` line in Blender 4.2 (5.0 prefixes it with time and channel),
    which a farm scraping stdout for `Saved:` would count as a second file."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def render_to(path: str) -> str:
    bpy.context.scene.render.filepath = path
    with _stdout_to_stderr():
        bpy.ops.render.render(write_still=True)
    if not os.path.isfile(path):
        raise RuntimeError(f"render did not write {path}")
    print(f"Saved: {path}", flush=True)
    return path


def triangles(obj: Any) -> int:
    obj.data.calc_loop_triangles()
    return len(obj.data.loop_triangles)
