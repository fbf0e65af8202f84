"""Export an nrconvert asset back to GLB, keeping what Blender's glTF exporter alone would drop:
NRC_neural_material (same MLP numbers, same feature PNG bytes), MSFT_lod (+ screen coverages),
the `captured` variant, and asset.extras.nrconvert (with the .hdr copied beside the new GLB).

Blender's exporter does the geometry and standard materials; `glTF2ExportUserExtension`
(found on the add-on's top level) adds ours while `nrconvert.export_glb` runs (inert otherwise):
- gather_asset_hook: asset.extras.nrconvert;
- gather_node_hook: remembers which glTF node each object became;
- gather_material_hook: NRC_neural_material, its feature textures (and a 1.1 environment's
  texture, one per image however many materials share it) built as glTF objects that the
  exporter then numbers and packs like its own;
- gather_gltf_hook (before anything is numbered): MSFT_lod on LOD0 pointing at the lower LOD
  nodes, which leave the scene tree (only LOD0 is a root, as the converter writes it); the
  asset root Empty is dropped when it is at the origin, so a round trip gives the same layout.
During the export every level is made visible and selected, the neural preview is switched to
its unlit fallback (the exporter reads that as KHR_materials_unlit + base colour texture), and
the variant UI is on (the exporter writes variants only then); all of it is restored afterwards.
"""
from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import bpy
import numpy as np
from bpy.props import StringProperty
from bpy_extras.io_utils import ExportHelper

from . import lod
from .importer import first_error_line
from ._vendor import neural
from .properties import SubPanel, active_asset

MSFT_LOD, COVERAGE_KEY = "MSFT_lod", "MSFT_screencoverage"
LINEAR, CLAMP, REPEAT = 9729, 33071, 10497
_export = {"current": None}


class ExportSession:
    def __init__(self, root):
        self.root = root
        self.metadata = root.nrconvert.metadata_dict()
        self.levels = [lvl for lvl in root.nrconvert.lods if lvl.object is not None]
        self.nodes: dict = {}  # object name -> gltf2_io.Node
        self.environments: dict = {}  # image name -> gltf2_io.TextureInfo (one texture for all LODs)


def png_rgba8(image) -> bytes:
    """PNG bytes of an image: the packed file as imported when there is one (bit-exact round
    trip), else its pixels encoded as 8-bit RGBA."""
    if image.packed_file is not None:
        return bytes(image.packed_file.data)
    w, h = image.size
    px = np.empty(w * h * 4, np.float32)
    image.pixels.foreach_get(px)
    rgba = np.clip(np.rint(px * 255.0), 0, 255).astype(np.uint8).reshape(h, w, 4)[::-1]
    raw = b"".join(b"\0" + row.tobytes() for row in rgba)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def _binary_data_class():
    """The glTF exporter's BinaryData (bytes it packs into the BIN chunk as a bufferView). The
    glTF add-on renamed its modules after 4.2: io.exp.binary_data in 5.0,
    io.exp.gltf2_io_binary_data in 4.2. A failing import would cost the file its neural material
    (5.0 logs a hook's exception and goes on) or the whole export (4.2's log line for it raises)."""
    try:
        from io_scene_gltf2.io.exp.binary_data import BinaryData
    except ImportError:
        from io_scene_gltf2.io.exp.gltf2_io_binary_data import BinaryData
    return BinaryData


class glTF2ExportUserExtension:  # noqa: N801 (the glTF add-on looks for this exact name)
    def __init__(self):
        self.session = _export["current"]

    def gather_asset_hook(self, asset, export_settings):
        if self.session is not None:
            asset.extras = dict(asset.extras or {}, nrconvert=self.session.metadata)

    def gather_node_hook(self, node, blender_object, export_settings):
        if self.session is not None and blender_object is not None:
            self.session.nodes[blender_object.name] = node

    def gather_material_hook(self, material, blender_material, export_settings):
        data = getattr(blender_material, "nrconvert", None)
        if self.session is None or data is None or not data.neural_json:
            return
        if data.feature_image_0 is None or data.feature_image_1 is None:
            return
        from io_scene_gltf2.io.com import gltf2_io
        from io_scene_gltf2.io.com.gltf2_io_extensions import Extension

        ext = json.loads(data.neural_json)
        environment = data.environment_image
        if "environment" in ext and environment is None:
            return  # the image is gone: the extension would not decode
        sampler = gltf2_io.Sampler(extensions=None, extras=None, mag_filter=LINEAR, min_filter=LINEAR,
                                   name=None, wrap_s=CLAMP, wrap_t=CLAMP)
        infos = [_texture_info(gltf2_io, image, f"{blender_material.name}_features{k}", sampler)
                 for k, image in enumerate((data.feature_image_0, data.feature_image_1))]
        ext["featureTextures"] = infos
        if "environment" in ext:
            if environment.name not in self.session.environments:
                repeat = gltf2_io.Sampler(extensions=None, extras=None, mag_filter=LINEAR, min_filter=LINEAR,
                                          name=None, wrap_s=REPEAT, wrap_t=CLAMP)
                self.session.environments[environment.name] = _texture_info(
                    gltf2_io, environment, environment.name, repeat)
            ext["environment"] = dict(ext["environment"], texture=self.session.environments[environment.name])
        material.extensions = dict(material.extensions or {})
        material.extensions[neural.EXTENSION] = Extension(neural.EXTENSION, ext, required=False)

    def gather_gltf_hook(self, active_scene_idx, scenes, animations, export_settings):
        session = self.session
        if session is None:
            return
        nodes = [session.nodes.get(lvl.object.name) for lvl in session.levels]
        if len(nodes) < 2 or any(n is None for n in nodes):
            return
        from io_scene_gltf2.io.com.gltf2_io_extensions import Extension

        lod0, lower = nodes[0], nodes[1:]
        lod0.extensions = dict(lod0.extensions or {})
        lod0.extensions[MSFT_LOD] = Extension(MSFT_LOD, {"ids": list(lower)}, required=False)
        coverage = [float(f"{lvl.coverage:.7g}") for lvl in session.levels]  # float32 -> shortest
        lod0.extras = dict(lod0.extras or {}, **{COVERAGE_KEY: coverage})
        root = session.nodes.get(session.root.name)
        for scene in scenes:
            scene.nodes = _detach(scene.nodes, lower, root)
            for node in session.nodes.values():
                if node.children:
                    node.children = _detach(node.children, lower, root)


def _texture_info(gltf2_io, image, name: str, sampler):
    """A glTF TextureInfo on the image's PNG bytes (the exporter numbers and packs it)."""
    img = gltf2_io.Image(buffer_view=_binary_data_class()(png_rgba8(image)), extensions=None, extras=None,
                         mime_type="image/png", name=name, uri=None)
    tex = gltf2_io.Texture(extensions=None, extras=None, name=None, sampler=sampler, source=img)
    return gltf2_io.TextureInfo(extensions=None, extras=None, index=tex, tex_coord=None)


def _identity(node) -> bool:
    return (not node.matrix and all(v is None or np.allclose(v, d, atol=1e-9) for v, d in (
        (node.translation, (0, 0, 0)), (node.rotation, (0, 0, 0, 1)), (node.scale, (1, 1, 1)))))


def _detach(children: list, lower: list, root) -> list:
    """Children without the lower LODs; an identity root Empty replaced by its own children."""
    out = []
    for child in children:
        if any(child is n for n in lower):
            continue
        if root is not None and child is root and _identity(root):
            out += _detach(list(root.children or []), lower, None)
        else:
            out.append(child)
    return out


def _copy_environment(root, metadata: dict, glb: Path) -> dict:
    """Put the asset's .hdr beside the exported GLB as <stem>.hdr and point the metadata at it."""
    meta = json.loads(json.dumps(metadata))
    env = meta.get("environment")
    src = Path(root.nrconvert.environment_path) if root.nrconvert.environment_path else None
    if isinstance(env, dict):
        if src is not None and src.is_file():
            dst = glb.with_suffix(".hdr")
            if src.resolve() != dst.resolve():
                shutil.copyfile(src, dst)
            env["uri"] = dst.name
        else:
            env.pop("uri", None)
    return meta


def _enable_variants_ui(prefs) -> None:
    """The glTF add-on's "Material Variants" preference: its exporter writes
    KHR_materials_variants only when it is on. Turned on and left on, as Blender's glTF importer
    itself does for files with variants (turning it off again unregisters the variant operators
    that other code may be using)."""
    if not prefs.KHR_materials_variants_ui:
        prefs.KHR_materials_variants_ui = True


class _ExportState:
    """Everything export_asset changes for the exporter's sake, restored on exit."""

    def __init__(self, context, objects):
        self.context, self.objects = context, objects
        self.hidden = {o.name: (o.hide_viewport, o.hide_get(), o.select_get()) for o in objects}
        self.slots = {o.name: [s.material for s in o.material_slots] for o in objects}
        self.selected = [o for o in context.view_layer.objects if o.select_get()]
        self.active = context.view_layer.objects.active
        self.prefs = context.preferences.addons["io_scene_gltf2"].preferences
        self.neural = [s.material for o in objects for s in o.material_slots if s.material] + \
            [lvl.captured_material for o in objects if o.nrconvert.is_asset for lvl in o.nrconvert.lods
             if lvl.captured_material]
        self.switched = []

    def __enter__(self):
        for o in self.context.view_layer.objects:
            o.select_set(False)
        for o in self.objects:
            o.hide_viewport = False
            o.hide_set(False)
            o.select_set(True)
        _enable_variants_ui(self.prefs)
        try:
            from . import neural_nodes
        except ImportError:
            return self
        for mat in set(self.neural):
            group = neural_nodes.neural_group_node(mat)
            showing = group is not None and any(out.is_linked for out in group.outputs)
            if showing and neural_nodes.use_neural(mat, False):  # restored on exit
                self.switched.append(mat)
        return self

    def __exit__(self, *exc):
        if self.switched:
            from . import neural_nodes

            for mat in self.switched:
                neural_nodes.use_neural(mat, True)
        for o in self.objects:
            hide_viewport, hidden, selected = self.hidden[o.name]
            o.select_set(selected)
            o.hide_set(hidden)
            o.hide_viewport = hide_viewport
            for slot, mat in zip(o.material_slots, self.slots[o.name]):
                slot.material = mat
        for o in self.selected:
            o.select_set(True)
        self.context.view_layer.objects.active = self.active


def export_asset(context, root, filepath: str, note) -> set:
    """Write `root`'s asset as a GLB at `filepath`; returns the glTF operator's result."""
    path = Path(bpy.path.abspath(filepath)).with_suffix(".glb")
    objects = [root, *root.children_recursive]
    session = ExportSession(root)
    session.metadata = _copy_environment(root, session.metadata, path)
    with lod.suspended(), _ExportState(context, objects):
        _export["current"] = session
        try:
            result = bpy.ops.export_scene.gltf(
                filepath=str(path), export_format="GLB", use_selection=True, export_cameras=True,
                export_tangents=True, export_extras=False, export_current_frame=True, export_animations=False)
        except Exception as exc:
            note("ERROR", f"Blender's glTF exporter failed: {first_error_line(exc)}")
            return {"CANCELLED"}
        finally:
            _export["current"] = None
    return result


class NRC_OT_export_glb(bpy.types.Operator, ExportHelper):
    """Export the active nrconvert asset as GLB, keeping its neural material, LODs and metadata"""

    bl_idname = "nrconvert.export_glb"
    bl_label = "Export nrconvert asset"
    filename_ext = ".glb"
    filter_glob: StringProperty(default="*.glb", options={"HIDDEN"})

    @classmethod
    def poll(cls, context):
        return active_asset(context) is not None

    def note(self, level: str, text: str) -> None:
        last_messages.append((level, text))
        self.report({level}, text)

    def execute(self, context):
        last_messages.clear()
        root = active_asset(context)
        if root is None:
            self.note("ERROR", "no nrconvert asset selected")
            return {"CANCELLED"}
        return export_asset(context, root, self.filepath, self.note)


last_messages: list[tuple[str, str]] = []


def menu_export(self, context):
    self.layout.operator(NRC_OT_export_glb.bl_idname, text="nrconvert asset (.glb)")


class NRC_PT_export(SubPanel, bpy.types.Panel):
    bl_idname = "NRC_PT_export"
    bl_label = "Export"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        self.layout.operator(NRC_OT_export_glb.bl_idname, icon="EXPORT", text="Export GLB")


CLASSES = (NRC_OT_export_glb, NRC_PT_export)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.TOPBAR_MT_file_export.append(menu_export)


def unregister() -> None:
    bpy.types.TOPBAR_MT_file_export.remove(menu_export)
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
