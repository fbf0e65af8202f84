"""Synthetic test captures and GLB renders, made with real Blender (bpy + Cycles on CPU).

`render_capture` renders a procedural object under one of Blender's bundled HDRIs into a
NeRF-synthetic / nerfstudio `transforms_*.json` dataset with held-out and relit test views and the
ground-truth mesh (or, for `object="street"`, a row of objects seen from cameras driving past it,
the large-scene test); `render_glb` renders an exported GLB from a capture's cameras under the same
settings, for quality measurement. Blender always runs in a subprocess: importing this package
never imports bpy, so it is safe next to torch.
"""
from __future__ import annotations

from nrconvert.synth._runner import BlenderRenderError, check_bpy
from nrconvert.synth.capture import render_capture
from nrconvert.synth.glb import render_glb
from nrconvert.synth.ply import read_ply, write_ply
from nrconvert.synth.presets import HDRIS, OBJECTS, PRESETS, Preset

__all__ = [
    "BlenderRenderError", "HDRIS", "OBJECTS", "PRESETS", "Preset",
    "check_bpy", "read_ply", "render_capture", "render_glb", "write_ply",
]
