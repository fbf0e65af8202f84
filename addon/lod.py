"""LOD switching for imported nrconvert assets: manual, or automatic by screen coverage (the
file's MSFT_screencoverage thresholds) or camera distance.

Why hide flags: the levels are ordinary mesh objects under the asset root, so every engine,
exporter and render farm sees the same thing: the chosen level has `hide_viewport` /
`hide_render` off, the others on. Viewport and render are chosen separately (the viewport may
follow the 3D view's eye, a render always uses the scene camera), and re-chosen on frame change,
before a render, and when something moves (persistent handlers, so they survive file
loads).

Screen coverage is the bounding sphere's projected area over the frame's area, the measure
MSFT_lod and the converter's `screen_coverages` use: level k shows while coverage > c_k;
below the last threshold nothing shows (the converter writes 0 there, so the coarsest level
never disappears).
"""
from __future__ import annotations

import math

import bpy
from bpy.app.handlers import persistent
from mathutils import Vector

from .properties import SubPanel, asset_root

VIEWPORT_SENSOR = 72.0  # the 3D view's lens is relative to a 72 mm sensor (Blender's zoom 2)
_state = {"busy": False, "rendering": False}


def bounding_sphere(obj) -> tuple[Vector, float]:
    """World-space centre and radius of the sphere around the object's bounding box."""
    corners = [obj.matrix_world @ Vector(c) for c in obj.bound_box]
    centre = sum(corners, Vector()) / 8.0
    return centre, max((c - centre).length for c in corners)


def camera_view(scene, cam_obj) -> tuple[Vector, bool, float, float]:
    """(eye, orthographic, half-width, half-height): for perspective cameras the halves are
    tan(fov / 2) per axis, for orthographic ones the frame's half extents (world units)."""
    frame = cam_obj.data.view_frame(scene=scene)
    xs, ys = [abs(v.x) for v in frame], [abs(v.y) for v in frame]
    ortho = cam_obj.data.type == "ORTHO"
    depth = 1.0 if ortho else max(abs(frame[0].z), 1e-9)
    scale = cam_obj.matrix_world.to_scale()
    half_x, half_y = max(xs) / depth, max(ys) / depth
    if ortho:
        half_x, half_y = half_x * abs(scale.x), half_y * abs(scale.y)
    return cam_obj.matrix_world.translation.copy(), ortho, half_x, half_y


def screen_coverage(centre: Vector, radius: float, view: tuple) -> float:
    """Share of the frame covered by the projected bounding sphere (inf with the eye inside)."""
    eye, ortho, half_x, half_y = view
    screen = 4.0 * half_x * half_y
    if ortho:
        return math.pi * radius * radius / max(screen, 1e-12)
    d = (centre - eye).length
    if d <= radius:
        return math.inf
    sin_a = radius / d
    tan_a = sin_a / math.sqrt(1.0 - sin_a * sin_a)
    return math.pi * tan_a * tan_a / max(screen, 1e-12)


def distance_for_coverage(coverage: float, radius: float, half_x: float, half_y: float) -> float:
    """Camera distance at which a perspective view sees `coverage` (0 -> 0, meaning no limit)."""
    if coverage <= 0.0:
        return 0.0
    tan_a = math.sqrt(coverage * 4.0 * half_x * half_y / math.pi)
    return radius * math.sqrt(1.0 + tan_a * tan_a) / tan_a


def level_for_coverage(thresholds: list[float], coverage: float) -> int:
    for k, c in enumerate(thresholds):
        if coverage > c:
            return k
    return -1


def level_for_distance(limits: list[float], distance: float) -> int:
    for k, d in enumerate(limits):
        if d <= 0.0 or distance <= d:
            return k
    return len(limits) - 1


def _levels(root) -> list:
    return [lvl for lvl in root.nrconvert.lods if lvl.object is not None]


def choose_level(root, view, depsgraph=None) -> int:
    """The level index for one view (see module docstring); -1 hides every level."""
    group = root.nrconvert
    levels = _levels(root)
    if not levels:
        return -1
    if group.lod_mode == "MANUAL":
        return min(group.manual_level, len(levels) - 1)
    if view is None:
        return 0
    centre, radius = bounding_sphere(_evaluated(levels[0].object, depsgraph))
    if group.lod_mode == "DISTANCE":
        return level_for_distance([lvl.distance for lvl in levels], (centre - view[0]).length)
    return level_for_coverage([lvl.coverage for lvl in levels], screen_coverage(centre, radius, view))


def _evaluated(obj, depsgraph):
    """The object as `depsgraph` evaluated it: in a frame-change handler of an animation render
    only the render's own depsgraph has this frame's camera, the original still has the last."""
    return obj.evaluated_get(depsgraph) if depsgraph is not None else obj


def show_level(root, viewport: int | None, render: int | None) -> bool:
    """Set the hide flags of each level (only the ones that change: writes cause updates);
    True when something changed."""
    changed = False
    for k, lvl in enumerate(_levels(root)):
        obj = lvl.object
        if viewport is not None and obj.hide_viewport != (k != viewport):
            obj.hide_viewport, changed = k != viewport, True
        if render is not None and obj.hide_render != (k != render):
            obj.hide_render, changed = k != render, True
    if viewport is not None:
        root.nrconvert.viewport_level = viewport
    if render is not None:
        root.nrconvert.render_level = render
    return changed


def view3d_view() -> tuple | None:
    """(eye, ortho, half_x, half_y) of the first 3D view with a region, or None (background)."""
    wm = getattr(bpy.context, "window_manager", None)
    for window in getattr(wm, "windows", []):
        for area in window.screen.areas:
            if area.type != "VIEW_3D":
                continue
            space, region = area.spaces.active, next((r for r in area.regions if r.type == "WINDOW"), None)
            if region is None or region.height == 0:
                continue
            rv3d = space.region_3d
            eye = rv3d.view_matrix.inverted().translation
            major = VIEWPORT_SENSOR / (2.0 * space.lens)
            aspect = region.width / region.height
            half_x, half_y = (major, major / aspect) if aspect >= 1 else (major * aspect, major)
            if not rv3d.is_perspective:
                half_x, half_y = half_x * rv3d.view_distance, half_y * rv3d.view_distance
            return eye, not rv3d.is_perspective, half_x, half_y
    return None


def asset_roots(scene) -> list:
    return [o for o in scene.objects if o.nrconvert.is_asset and asset_root(o) is o]


def update_scene(scene, viewport: bool = True, render: bool = True, depsgraph=None) -> bool:
    """Choose and show the level of every asset in `scene` for the viewport and/or render,
    seen as `depsgraph` evaluated the scene (None: the original objects). True on a change."""
    if _state["busy"]:
        return False
    _state["busy"] = True
    try:
        cam = scene.camera if scene.camera is not None and scene.camera.type == "CAMERA" else None
        cam_view = camera_view(scene, _evaluated(cam, depsgraph)) if cam is not None else None
        eye_view = cam_view
        if viewport and scene.nrconvert.lod_view == "VIEW" and not bpy.app.background:
            eye_view = view3d_view() or cam_view
        changed = False
        for root in asset_roots(scene):
            changed |= show_level(root, choose_level(root, eye_view, depsgraph) if viewport else None,
                                  choose_level(root, cam_view, depsgraph) if render else None)
        return changed
    finally:
        _state["busy"] = False


@persistent
def on_frame_change(scene, depsgraph=None) -> None:
    """After the frame's animation is evaluated (post: `pre` still sees the last frame's camera).
    In animation renders this runs on the render's own depsgraph, the only place with this
    frame's camera; there only the render flags change (the engine syncs after this)."""
    if not scene.nrconvert.lod_auto:
        return
    rendering = depsgraph is not None and depsgraph.mode == "RENDER"
    update_scene(scene, viewport=not rendering, depsgraph=depsgraph)


@persistent
def on_render_pre(scene, depsgraph=None) -> None:
    """Still renders (F12) of a frame already shown: choose from the current objects."""
    _state["rendering"] = True
    if scene.nrconvert.lod_auto:
        update_scene(scene, viewport=False, render=True)


@persistent
def on_render_end(scene, depsgraph=None) -> None:
    _state["rendering"] = False


@persistent
def on_depsgraph_update(scene, depsgraph) -> None:
    """Follow camera and asset moves in the viewport (not while a render reads the flags)."""
    if _state["rendering"] or not scene.nrconvert.lod_auto or not depsgraph.id_type_updated("OBJECT"):
        return
    update_scene(scene, depsgraph=depsgraph)


def _view_timer() -> float:
    """Interactive sessions in 3D-view mode: re-check the view a few times a second."""
    scene = getattr(bpy.context, "scene", None)
    if scene is not None and scene.nrconvert.lod_auto and scene.nrconvert.lod_view == "VIEW":
        update_scene(scene, viewport=True, render=False)
    return 0.25


class suspended:
    """`with lod.suspended():` no automatic switching inside (the exporter changes frames and
    visibility and must see every level)."""

    def __enter__(self):
        self.was = _state["busy"]
        _state["busy"] = True

    def __exit__(self, *exc):
        _state["busy"] = self.was


class NRC_OT_update_lods(bpy.types.Operator):
    """Choose every asset's LOD for the current camera now"""

    bl_idname = "nrconvert.update_lods"
    bl_label = "Update LODs"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        update_scene(context.scene)
        return {"FINISHED"}


class NRC_PT_lod(SubPanel, bpy.types.Panel):
    bl_idname = "NRC_PT_lod"
    bl_label = "LOD"

    @classmethod
    def poll(cls, context):
        from .properties import active_asset

        root = active_asset(context)
        return root is not None and len(root.nrconvert.lods) > 0

    def draw(self, context):
        from .properties import active_asset

        layout, root = self.layout, active_asset(context)
        group = root.nrconvert
        layout.prop(group, "lod_mode", text="Mode")
        if group.lod_mode == "MANUAL":
            layout.prop(group, "manual_level")
        col = layout.column(align=True)
        for k, lvl in enumerate(group.lods):
            row = col.row(align=True)
            row.label(text=f"LOD{k}: {lvl.object.name if lvl.object else '?'}")
            row.prop(lvl, "distance" if group.lod_mode == "DISTANCE" else "coverage", text="")
        layout.label(text=f"Viewport: LOD{group.viewport_level}   Render: LOD{group.render_level}")
        layout.prop(context.scene.nrconvert, "lod_auto")
        layout.prop(context.scene.nrconvert, "lod_view")
        layout.operator("nrconvert.update_lods", icon="FILE_REFRESH")


HANDLERS = (("frame_change_post", on_frame_change), ("render_pre", on_render_pre),
            ("render_complete", on_render_end), ("render_cancel", on_render_end),
            ("depsgraph_update_post", on_depsgraph_update))
CLASSES = (NRC_OT_update_lods, NRC_PT_lod)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    for name, fn in HANDLERS:
        getattr(bpy.app.handlers, name).append(fn)
    if not bpy.app.background:
        bpy.app.timers.register(_view_timer, first_interval=1.0, persistent=True)


def unregister() -> None:
    if bpy.app.timers.is_registered(_view_timer):
        bpy.app.timers.unregister(_view_timer)
    for name, fn in HANDLERS:
        handlers = getattr(bpy.app.handlers, name)
        if fn in handlers:
            handlers.remove(fn)
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
