"""The `street` row built inside Blender (imports bpy: subprocess only).

The layout (which object, where, how large) is decided in `synth.street` and arrives in the job;
here each object is built from the single-object scenes' meshes and materials, varied so no two
look alike, and stood on the ground (z = 0) at its place in the row.
"""
from __future__ import annotations

import math
from typing import Any

import bpy
import numpy as np
from mathutils import Euler, Matrix

from nrconvert.synth import _blender_objects as objects


def _pillar() -> bpy.types.Object:
    """The box upright and unrotated, its face colours shifted by three so it differs from the box."""
    obj = objects.make_box("pillar")
    obj.matrix_world = Matrix.Identity(4)
    mats = list(obj.data.materials)
    for i, mat in enumerate(mats[3:] + mats[:3]):
        obj.data.materials[i] = mat
    return obj


def _suzanne_glossy() -> bpy.types.Object:
    """suzanne_specular with finer cells, so the two Suzannes of the row do not look alike."""
    obj = objects.make_suzanne("suzanne_glossy", roughness=0.2, specular=0.8)
    obj.data.materials[0] = objects.cell_material("suzanne_glossy_fine", 0.2, 0.8, scale=6.0)
    return obj


def _knot_2_5() -> bpy.types.Object:
    """A thinner (2, 5) torus knot with rough cell colours: a different shape from the (2, 3) knot."""
    verts, quads = objects.torus_knot_mesh(p=2, q=5, n_u=600, n_v=24, tube=0.3)
    mesh = objects._mesh_from_numpy("knot_2_5", verts, quads)
    mesh.shade_smooth()
    obj = objects._link_mesh("knot_2_5", mesh)
    obj.data.materials.append(objects.cell_material("knot_2_5_mat", roughness=0.5, specular=0.4, scale=3.0))
    return obj


_BUILDERS = {
    "box": objects.make_box, "suzanne": objects.make_suzanne, "torus_knot": objects.make_torus_knot,
    "materials": objects.make_materials, "pillar": _pillar, "suzanne_glossy": _suzanne_glossy,
    "knot_2_5": _knot_2_5,
}


def _stand(obj: bpy.types.Object, item: dict[str, Any]) -> None:
    """Fit into [-1, 1]^3, scale to the item's half-extents, tilt, turn, then stand on z = 0 at x.

    The resting height comes from the evaluated vertices, not the bounding box, so a tilted object
    touches the ground instead of floating above it.
    """
    objects._fit(obj, 1.0)
    turn = Euler((math.radians(item["tilt_deg"]), 0.0, 0.0)).to_matrix().to_4x4()
    turn = Euler((0.0, 0.0, math.radians(item["yaw_deg"]))).to_matrix().to_4x4() @ turn
    obj.matrix_world = turn @ Matrix.Diagonal((*item["scale"], 1.0)) @ obj.matrix_world
    bpy.context.view_layer.update()
    verts, _ = objects.world_triangles(obj)
    lo, hi = verts.min(axis=0), verts.max(axis=0)
    shift = (float(item["x"]) - (lo[0] + hi[0]) / 2.0, -(lo[1] + hi[1]) / 2.0, -lo[2])
    obj.matrix_world = Matrix.Translation(shift) @ obj.matrix_world
    bpy.context.view_layer.update()


def make_street(row: list[dict[str, Any]]) -> list[bpy.types.Object]:
    """Build every object of the row in the current scene, in row order."""
    built = []
    for item in row:
        if item["object"] not in _BUILDERS:
            raise ValueError(f"unknown street object {item['object']!r}")
        obj = _BUILDERS[item["object"]]()
        _stand(obj, item)
        built.append(obj)
    return built


def street_triangles(objs: list[bpy.types.Object]) -> tuple[np.ndarray, np.ndarray]:
    """All objects' world-space triangles in one mesh: the ground truth covers the whole row."""
    verts, tris, offset = [], [], 0
    for obj in objs:
        v, t = objects.world_triangles(obj)
        verts.append(v)
        tris.append(t + offset)
        offset += len(v)
    return np.concatenate(verts), np.concatenate(tris)
