"""File › Import › nrconvert asset (.glb): Blender's own glTF importer plus our hooks.

Blender's importer builds meshes, PBR and `captured` variant materials, cameras; it keeps none
of our extensions. Its hooks (`glTF2ImportUserExtension`, found on the add-on's top level) hand
us the node -> object and material -> Blender material maps, and `build_asset` (asset.py) turns
the file's extras into an asset: LOD set, metadata, estimated-light world, neural preview.

The file is read here first (glb_io): an unreadable GLB ends in CANCELLED with an error report
before Blender's importer sees it; anything wrong with our extensions is a warning plus the
fallback (the plain import), never a traceback. The hooks do nothing unless this operator is
running, so a plain File › Import › glTF stays plain.
"""
from __future__ import annotations

import os
import tempfile

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty
from bpy_extras.io_utils import ImportHelper

from . import glb_io
from .properties import LOD_MODES

last_messages: list[tuple[str, str]] = []  # (level, text) of the last import, for tests/scripts
_session = {"current": None}


class ImportSession:
    """What one import knows: the file's JSON and BIN chunk, and (from the hooks) which Blender
    object each glTF node became and which Blender material each glTF material became."""

    def __init__(self, path: str, doc: dict, binary: bytes, note):
        self.path, self.doc, self.binary, self.note = path, doc, binary, note
        self.nodes: dict | None = None
        self.materials: dict = {}


class glTF2ImportUserExtension:  # noqa: N801 (the glTF add-on looks for this exact name)
    """Hooks Blender's glTF importer calls; inert outside `import_scene.nrconvert_glb`."""

    def __init__(self):
        self.session = _session["current"]

    def gather_import_scene_after_nodes_hook(self, gltf_scene, blender_scene, gltf):
        session = self.session
        if session is None:
            return
        session.nodes = {i: v.blender_object for i, v in gltf.vnodes.items()
                         if isinstance(i, int) and getattr(v, "blender_object", None) is not None}
        for i, pymat in enumerate(gltf.data.materials or []):
            names = getattr(pymat, "blender_material", None) or {}
            name = names.get(None) or next(iter(names.values()), None)
            if name and name in bpy.data.materials:
                session.materials[i] = bpy.data.materials[name]


def first_error_line(exc: BaseException) -> str:
    """The message of an error another operator reported (bpy.ops wraps it in 'Error: ...' lines
    and a 'Location:' line), else the exception's last line."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    errors = [ln[len("Error:"):].strip() for ln in lines if ln.startswith("Error:")]
    if errors and errors[0].startswith("Python: Traceback"):  # a crash inside that operator:
        body = [ln for ln in lines if not ln.startswith(("Location:", "File ", "Error:"))]
        return body[-1] if body else "internal error"  # its exception line, not the traceback
    return (errors or lines or [type(exc).__name__])[0]


def nodes_by_name(doc: dict, objects) -> dict:
    """Fallback node map when the hooks did not run (the add-on is loaded outside Blender's
    preferences, so the glTF add-on cannot find them): match the file's node names."""
    by_name = {o.name: o for o in objects}
    return {i: by_name[n["name"]] for i, n in enumerate(doc.get("nodes") or [])
            if isinstance(n, dict) and n.get("name") in by_name}


class IMPORT_SCENE_OT_nrconvert_glb(bpy.types.Operator, ImportHelper):
    """Import an nrconvert asset: LOD set, neural preview, estimated light, metadata"""

    bl_idname = "import_scene.nrconvert_glb"
    bl_label = "Import nrconvert asset"
    bl_options = {"REGISTER", "UNDO", "PRESET"}

    filename_ext = ".glb"
    filter_glob: StringProperty(default="*.glb", options={"HIDDEN"})
    import_cameras: BoolProperty(name="Capture cameras", default=False,
                                 description="Also import the cameras the photos were taken from")
    use_world: BoolProperty(name="Estimated light as world", default=True,
                            description="Make the light the converter estimated the scene's world")
    lod_mode: EnumProperty(name="LOD", items=LOD_MODES, default="COVERAGE")

    def note(self, level: str, text: str) -> None:
        last_messages.append((level, text))
        self.report({level}, text)

    def execute(self, context):
        last_messages.clear()
        try:
            doc, binary = glb_io.read_glb(self.filepath)
        except glb_io.GlbFormatError as exc:
            self.note("ERROR", str(exc))
            return {"CANCELLED"}
        session = ImportSession(self.filepath, doc, binary, self.note)
        dropped = glb_io.drop_malformed_extensions(doc)
        for where in dropped:
            self.note("WARNING", f"{where} is not a JSON object: ignored")
        self.repaired = bool(dropped)
        before = set(bpy.data.objects)
        _session["current"] = session
        try:
            result = self.run_gltf_importer(doc, binary)
        except Exception as exc:  # the glTF add-on raises on files it cannot build
            self.note("ERROR", f"Blender's glTF importer failed: {first_error_line(exc)}")
            return {"CANCELLED"}
        finally:
            _session["current"] = None
        if result != {"FINISHED"}:
            self.note("ERROR", f"Blender's glTF importer could not read {self.filepath}")
            return {"CANCELLED"}
        if session.nodes is None:
            session.nodes = nodes_by_name(doc, set(bpy.data.objects) - before)
        from .asset import build_asset

        try:
            build_asset(context, session, self)
        except Exception as exc:  # never a traceback: the plain glTF import stays as it is
            self.note("WARNING", f"nrconvert extras not applied ({type(exc).__name__}: {exc}); "
                      "showing the plain glTF import")
        return {"FINISHED"}

    def run_gltf_importer(self, doc: dict, binary: bytes) -> set:
        """Blender's importer on the file, or on a repaired copy when extension entries had to
        be dropped (the copy sits in a temporary folder: our GLBs reference nothing beside them
        but the .hdr, which the asset step reads from the original folder)."""
        if not self.repaired:
            return bpy.ops.import_scene.gltf(filepath=self.filepath)
        with tempfile.TemporaryDirectory(prefix="nrconvert-import-") as tmp:
            path = os.path.join(tmp, os.path.basename(self.filepath))
            with open(path, "wb") as f:
                f.write(glb_io.pack_glb(doc, binary))
            return bpy.ops.import_scene.gltf(filepath=path)

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "import_cameras")
        layout.prop(self, "use_world")
        layout.prop(self, "lod_mode")


def menu_import(self, context):
    self.layout.operator(IMPORT_SCENE_OT_nrconvert_glb.bl_idname, text="nrconvert asset (.glb)")


def register() -> None:
    bpy.utils.register_class(IMPORT_SCENE_OT_nrconvert_glb)
    bpy.types.TOPBAR_MT_file_import.append(menu_import)


def unregister() -> None:
    bpy.types.TOPBAR_MT_file_import.remove(menu_import)
    bpy.utils.unregister_class(IMPORT_SCENE_OT_nrconvert_glb)
