"""Convert from the UI: pick a capture folder and an output .glb, run `nrconvert`, import the result.

The converter runs as a subprocess (convert_job.py: torch never loads inside Blender). Its JSON
progress lines drive a progress bar in the Convert sub-panel and the window manager's cursor
progress. The operator's logic lives in `ConvertRunner` so it runs without Blender's event loop:
`start()`, then `tick()` every timer event until it returns FINISHED (result imported) or
CANCELLED (failed, or `cancel()`). The modal operator only calls those; with no window
(background mode) `execute` ticks in a loop and blocks.

Cancelling (ESC or the Cancel button) terminates the converter; its work folder (OUTPUT.work/)
stays, so a later run with Resume (`--resume`) reuses the finished stages.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, PointerProperty, StringProperty

from .convert_job import EXIT_CODES, PRESETS, ConvertJob, build_command, find_executable
from .properties import SubPanel

TICK_S = 0.2
last_messages: list[tuple[str, str]] = []  # (level, text) of the last run, for scripts and tests
_active: dict[str, Any] = {"runner": None}


def _operator_exists(module: str, name: str) -> bool:
    try:
        getattr(getattr(bpy.ops, module), name).get_rna_type()
        return True
    except (AttributeError, KeyError):
        return False


def import_result(path: str) -> tuple[set, str]:
    """Import a GLB with the add-on's importer when registered, else Blender's glTF importer."""
    if _operator_exists("import_scene", "nrconvert_glb"):
        return bpy.ops.import_scene.nrconvert_glb(filepath=str(path)), "import_scene.nrconvert_glb"
    return bpy.ops.import_scene.gltf(filepath=str(path)), "import_scene.gltf"


def preferences(context: Any = None) -> Any:
    """The add-on preferences (None when the package is not enabled as an add-on)."""
    addon = (context or bpy.context).preferences.addons.get(__package__)
    return addon.preferences if addon is not None else None


class ConvertRunner:
    """What the Convert operator does, one call per timer tick (see the module docstring)."""

    def __init__(self, job: ConvertJob, report: Callable[[set, str], None] | None = None,
                 import_glb: bool = True) -> None:
        self.job, self.import_glb = job, import_glb
        self._report = report
        self.result: set | None = None
        self.imported: list = []

    def report(self, level: str, text: str) -> None:
        last_messages.append((level, text))
        if self._report is not None:
            self._report({level}, text)
        else:
            print(f"nrconvert: {level}: {text}")

    def start(self, context: Any) -> set:
        """Launch the converter; CANCELLED (reported) when it cannot start."""
        last_messages.clear()
        try:
            self.job.start()
        except OSError as exc:
            self.report("ERROR", f"cannot run {self.job.command[0]}: {exc.strerror or exc}")
            return self._finish(context, {"CANCELLED"})
        _active["runner"] = self
        state = context.window_manager.nrc_convert
        state.running, state.progress, state.stage, state.detail = True, 0.0, "Starting", ""
        state.message, state.workdir = "", str(self.job.workdir)
        context.window_manager.progress_begin(0, 1000)
        return {"RUNNING_MODAL"}

    def tick(self, context: Any) -> set:
        """Advance: RUNNING_MODAL while the converter runs, then FINISHED or CANCELLED."""
        if self.result is not None:
            return self.result
        code = self.job.poll()
        self._show(context)
        if code is None:
            return {"RUNNING_MODAL"}
        if self.job.cancelled:
            return self.cancel(context)
        if code != 0:
            kind = EXIT_CODES.get(code, "error") if code > 0 else f"killed by signal {-code}"
            self.report("ERROR", f"nrconvert failed (exit code {code}, {kind}): {self.job.error_text()}")
            return self._finish(context, {"CANCELLED"})
        return self._finish(context, self._import(context))

    def cancel(self, context: Any) -> set:
        """Terminate the converter and say where its work folder is (for Resume)."""
        if self.result is not None:
            return self.result
        self.job.cancel()
        kept = self.job.workdir.is_dir()
        self.report("WARNING", "Conversion cancelled" + (
            f"; the work folder {self.job.workdir} is kept: run again with Resume to continue"
            if kept else ""))
        return self._finish(context, {"CANCELLED"})

    def _import(self, context: Any) -> set:
        done = self.job.progress.done or {}
        glb = Path(done.get("glb") or self.job.output)
        if not glb.is_file():
            self.report("ERROR", f"nrconvert exited 0 but wrote no GLB at {glb}")
            return {"CANCELLED"}
        if not self.import_glb:
            self.report("INFO", f"Converted: {glb}")
            return {"FINISHED"}
        before = set(bpy.data.objects)
        try:
            result, how = import_result(str(glb))
        except RuntimeError as exc:
            self.report("ERROR", f"converted {glb}, but the import failed: {exc}")
            return {"CANCELLED"}
        self.imported = [o for o in bpy.data.objects if o not in before]
        if "FINISHED" not in result:
            self.report("ERROR", f"converted {glb}, but {how} returned {sorted(result)}")
            return {"CANCELLED"}
        self.report("INFO", f"Converted and imported {glb} ({len(self.imported)} objects)")
        return {"FINISHED"}

    def _show(self, context: Any) -> None:
        p, wm = self.job.progress, context.window_manager
        state = wm.nrc_convert
        state.progress, state.stage, state.detail = p.fraction, p.label, p.detail
        wm.progress_update(int(p.fraction * 1000))
        _redraw(context)

    def _finish(self, context: Any, result: set) -> set:
        self.result = result
        if _active["runner"] is self:
            _active["runner"] = None
        wm = context.window_manager
        state = wm.nrc_convert
        state.running = False
        state.message = last_messages[-1][1] if last_messages else ""
        if "FINISHED" in result:
            state.progress, state.stage = 1.0, "Done"
        wm.progress_end()
        _redraw(context)
        return result


def _redraw(context: Any) -> None:
    screen = getattr(context, "screen", None)
    for area in getattr(screen, "areas", ()):
        if area.type == "VIEW_3D":
            area.tag_redraw()


def make_runner(context: Any, capture: str, output: str, preset: str = "", resume: bool = False,
                extra: str | None = None, report: Callable | None = None) -> ConvertRunner:
    """A runner for these paths with the add-on preferences (raises ValueError on bad input)."""
    prefs = preferences(context)
    exe_setting = getattr(prefs, "executable", "")
    exe = find_executable(bpy.path.abspath(exe_setting) if exe_setting else "")
    if exe is None:
        raise ValueError(f"nrconvert executable not found ({exe_setting or 'nrconvert on PATH'}): "
                         "set it in the add-on preferences")
    capture, output = bpy.path.abspath(capture), bpy.path.abspath(output)
    if not capture or not os.path.isdir(capture):
        raise ValueError(f"capture folder not found: {capture or '(none chosen)'}")
    if not output:
        raise ValueError("choose an output .glb")
    if not output.lower().endswith(".glb"):
        output += ".glb"
    preset = preset or getattr(prefs, "preset", "balanced")
    extra = getattr(prefs, "extra_args", "") if extra is None else extra
    cmd = build_command(exe, capture, output, preset, resume=resume, extra=extra)
    return ConvertRunner(ConvertJob(cmd, output), report=report)


class NRC_ConvertPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    executable: StringProperty(name="nrconvert executable", subtype="FILE_PATH", default="",
                               description="Path to the nrconvert command (empty: find it on PATH)")
    preset: EnumProperty(name="Preset", items=PRESETS, default="balanced")
    extra_args: StringProperty(name="Extra options", default="",
                               description="More nrconvert options, e.g. --lods 3 --set steps=4000")

    def draw(self, context: Any) -> None:
        layout = self.layout
        layout.prop(self, "executable")
        found = find_executable(bpy.path.abspath(self.executable) if self.executable else "")
        layout.label(text=f"Using: {found}" if found else "nrconvert not found",
                     icon="CHECKMARK" if found else "ERROR")
        layout.prop(self, "preset")
        layout.prop(self, "extra_args")


class NRC_ConvertSettings(bpy.types.PropertyGroup):
    capture_dir: StringProperty(name="Capture", subtype="DIR_PATH",
                                description="Photos + transforms.json, or a COLMAP model + images")
    output_path: StringProperty(name="Output", subtype="FILE_PATH", description="The .glb to write")
    resume: BoolProperty(name="Resume", default=False,
                         description="Reuse the finished stages of an earlier (cancelled) run")


class NRC_ConvertState(bpy.types.PropertyGroup):
    running: BoolProperty(default=False)
    progress: FloatProperty(name="Progress", subtype="FACTOR", min=0.0, max=1.0)
    stage: StringProperty(name="Stage")
    detail: StringProperty(name="Detail")
    message: StringProperty(name="Last result")
    workdir: StringProperty(name="Work folder", subtype="DIR_PATH")


class NRCONVERT_OT_convert(bpy.types.Operator):
    """Run nrconvert on a capture folder and import the GLB it writes"""

    bl_idname = "nrconvert.convert"
    bl_label = "Convert Capture"
    bl_options = {"REGISTER"}

    capture_dir: StringProperty(name="Capture", subtype="DIR_PATH")
    filepath: StringProperty(name="Output", subtype="FILE_PATH")
    preset: StringProperty(name="Preset", description="Empty: the add-on preference")
    resume: BoolProperty(name="Resume", default=False)

    _timer = None
    _runner: ConvertRunner | None = None

    def invoke(self, context: Any, event: Any) -> set:
        settings = context.scene.nrc_convert
        self.capture_dir = self.capture_dir or settings.capture_dir
        self.filepath = self.filepath or settings.output_path
        self.resume = self.resume or settings.resume
        return self.execute(context)

    def execute(self, context: Any) -> set:
        if _active["runner"] is not None:
            self.report({"ERROR"}, "a conversion is already running")
            return {"CANCELLED"}
        try:
            runner = make_runner(context, self.capture_dir, self.filepath, self.preset, self.resume,
                                 report=self.report)
        except ValueError as exc:
            last_messages[:] = [("ERROR", str(exc))]
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        result = runner.start(context)
        if result != {"RUNNING_MODAL"}:
            return result
        if bpy.app.background or context.window is None:  # no event loop: block until it ends
            while result == {"RUNNING_MODAL"}:
                time.sleep(TICK_S)
                result = runner.tick(context)
            return result
        self._runner = runner
        self._timer = context.window_manager.event_timer_add(TICK_S, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context: Any, event: Any) -> set:
        if event.type == "ESC" and event.value == "PRESS":
            result = self._runner.cancel(context)
        elif event.type == "TIMER":
            result = self._runner.tick(context)
        else:
            return {"PASS_THROUGH"}
        if result != {"RUNNING_MODAL"}:
            context.window_manager.event_timer_remove(self._timer)
        return result


class NRCONVERT_OT_convert_cancel(bpy.types.Operator):
    """Stop the running conversion (its work folder is kept for Resume)"""

    bl_idname = "nrconvert.convert_cancel"
    bl_label = "Cancel Conversion"

    @classmethod
    def poll(cls, context: Any) -> bool:
        return _active["runner"] is not None

    def execute(self, context: Any) -> set:
        _active["runner"].job.cancel()  # the next tick reports and finishes
        return {"FINISHED"}


class NRC_PT_convert(SubPanel, bpy.types.Panel):
    bl_label = "Convert"
    bl_idname = "NRC_PT_convert"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: Any) -> None:
        layout, settings = self.layout, context.scene.nrc_convert
        state = context.window_manager.nrc_convert
        col = layout.column(align=True)
        col.enabled = not state.running
        col.prop(settings, "capture_dir")
        col.prop(settings, "output_path")
        col.prop(settings, "resume")
        prefs = preferences(context)
        if prefs is not None:
            col.prop(prefs, "preset")
        if state.running:
            text = f"{state.stage} {state.progress * 100:.0f}%" + (f"  {state.detail}" if state.detail else "")
            layout.progress(factor=state.progress, type="BAR", text=text)
            layout.operator(NRCONVERT_OT_convert_cancel.bl_idname, icon="CANCEL")
        else:
            layout.operator(NRCONVERT_OT_convert.bl_idname, icon="PLAY")
        if state.message:
            layout.label(text=state.message, icon="INFO")


_CLASSES = (NRC_ConvertPreferences, NRC_ConvertSettings, NRC_ConvertState, NRCONVERT_OT_convert,
            NRCONVERT_OT_convert_cancel)


def register() -> None:
    for cls in _CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.nrc_convert = PointerProperty(type=NRC_ConvertSettings)
    bpy.types.WindowManager.nrc_convert = PointerProperty(type=NRC_ConvertState)
    if hasattr(bpy.types, "NRC_PT_main"):  # the parent panel comes from properties.py
        bpy.utils.register_class(NRC_PT_convert)


def unregister() -> None:
    runner = _active["runner"]
    if runner is not None:
        runner.job.cancel()
        _active["runner"] = None
    if NRC_PT_convert.is_registered:
        bpy.utils.unregister_class(NRC_PT_convert)
    del bpy.types.WindowManager.nrc_convert
    del bpy.types.Scene.nrc_convert
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
