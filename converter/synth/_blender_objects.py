"""Procedural test objects, built inside Blender (imports bpy: subprocess only).

Every object fits inside [-1, 1]^3 around the origin and carries a texture with several distinct
saturated colours, so reconstructions have something to lock onto and colour errors show.
`materials` adds untextured glossy and metal parts: the surfaces relightable materials must handle.
"""
from __future__ import annotations

import math

import bmesh
import bpy
import numpy as np
from mathutils import Euler, Matrix, Vector

FIT_HALF_EXTENT = 0.9  # largest |coordinate| of a fitted object: a margin inside [-1, 1]

PALETTE = [  # saturated, well separated hues (linear RGB)
    (0.80, 0.05, 0.03, 1.0), (0.90, 0.60, 0.02, 1.0), (0.10, 0.55, 0.05, 1.0),
    (0.02, 0.15, 0.80, 1.0), (0.60, 0.03, 0.55, 1.0), (0.02, 0.55, 0.60, 1.0),
]


def _principled(name: str) -> tuple[bpy.types.Material, bpy.types.Node]:
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    bsdf = next(n for n in mat.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    return mat, bsdf


def _ramp(nodes: bpy.types.Nodes, colors: list[tuple[float, ...]]) -> bpy.types.Node:
    """A constant colour ramp with one equal-width band per colour."""
    ramp = nodes.new("ShaderNodeValToRGB")
    ramp.color_ramp.interpolation = "CONSTANT"
    els = ramp.color_ramp.elements
    while len(els) < len(colors):
        els.new(0.5)
    for i, (el, col) in enumerate(zip(els, colors)):
        el.position = i / len(colors)
        el.color = col
    return ramp


def cell_material(name: str, roughness: float, specular: float, scale: float = 2.5) -> bpy.types.Material:
    """Voronoi cells in object space, each a palette colour, with noise-wobbled borders."""
    mat, bsdf = _principled(name)
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    coord = nodes.new("ShaderNodeTexCoord")
    noise = nodes.new("ShaderNodeTexNoise")
    noise.inputs["Scale"].default_value = 3.0
    mix = nodes.new("ShaderNodeMix")
    mix.data_type = "VECTOR"
    mix.inputs["Factor"].default_value = 0.15
    voronoi = nodes.new("ShaderNodeTexVoronoi")
    voronoi.inputs["Scale"].default_value = scale
    ramp = _ramp(nodes, PALETTE)
    links.new(coord.outputs["Object"], noise.inputs["Vector"])
    links.new(coord.outputs["Object"], mix.inputs["A"])
    links.new(noise.outputs["Color"], mix.inputs["B"])
    links.new(mix.outputs["Result"], voronoi.inputs["Vector"])
    links.new(voronoi.outputs["Color"], ramp.inputs["Fac"])
    links.new(ramp.outputs["Color"], bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = roughness
    bsdf.inputs["Specular IOR Level"].default_value = specular
    return mat


def _link_mesh(name: str, mesh: bpy.types.Mesh) -> bpy.types.Object:
    obj = bpy.data.objects.new(name, mesh)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def _fit(obj: bpy.types.Object, half_extent: float = FIT_HALF_EXTENT) -> None:
    """Centre the evaluated object's bounding box on the origin and scale its largest half-extent."""
    bpy.context.view_layer.update()
    ev = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    corners = np.array([tuple(obj.matrix_world @ Vector(c)) for c in ev.bound_box])
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    s = half_extent / float(np.max(hi - lo) / 2.0)
    centre = (lo + hi) / 2.0
    obj.matrix_world = Matrix.Translation(-s * centre) @ Matrix.Scale(s, 4) @ obj.matrix_world
    bpy.context.view_layer.update()


def make_suzanne(name: str = "suzanne", roughness: float = 0.6, specular: float = 0.3) -> bpy.types.Object:
    """Suzanne, subdivided twice and smooth-shaded, with the cell texture."""
    mesh = bpy.data.meshes.new(name)
    bm = bmesh.new()
    bmesh.ops.create_monkey(bm)
    bm.to_mesh(mesh)
    bm.free()
    mesh.shade_smooth()
    obj = _link_mesh(name, mesh)
    sub = obj.modifiers.new("subdiv", "SUBSURF")
    sub.levels = sub.render_levels = 2
    obj.data.materials.append(cell_material(f"{name}_mat", roughness, specular))
    _fit(obj)
    return obj


def torus_knot_mesh(p: int = 2, q: int = 3, n_u: int = 400, n_v: int = 32, tube: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """Vertices and quads of a tube of radius `tube` around the (p, q) torus knot.

    The knot's tangent is never vertical, so cross(tangent, Z) gives a smooth periodic frame with
    no seam twist (unlike Frenet or parallel transport on a closed curve).
    """
    t = np.linspace(0.0, 2.0 * np.pi, n_u, endpoint=False)
    r = np.cos(q * t) + 2.0
    curve = np.stack([r * np.cos(p * t), r * np.sin(p * t), -np.sin(q * t)], axis=1)
    dr = -q * np.sin(q * t)
    tangent = np.stack([dr * np.cos(p * t) - r * p * np.sin(p * t),
                        dr * np.sin(p * t) + r * p * np.cos(p * t),
                        -q * np.cos(q * t)], axis=1)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    normal = np.cross(tangent, [0.0, 0.0, 1.0])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    binormal = np.cross(tangent, normal)
    a = np.linspace(0.0, 2.0 * np.pi, n_v, endpoint=False)
    ring = np.cos(a)[None, :, None] * normal[:, None] + np.sin(a)[None, :, None] * binormal[:, None]
    verts = (curve[:, None] + tube * ring).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(n_u), np.arange(n_v), indexing="ij")
    i1, j1 = (i + 1) % n_u, (j + 1) % n_v
    quads = np.stack([i * n_v + j, i1 * n_v + j, i1 * n_v + j1, i * n_v + j1], axis=-1).reshape(-1, 4)
    return verts, quads


def _mesh_from_numpy(name: str, verts: np.ndarray, faces: np.ndarray) -> bpy.types.Mesh:
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(verts.tolist(), [], faces.tolist())
    mesh.validate()
    mesh.update()
    return mesh


def make_torus_knot(name: str = "torus_knot") -> bpy.types.Object:
    """A glossy coloured dielectric (2, 3) torus knot with two-tone noise bands."""
    verts, quads = torus_knot_mesh()
    mesh = _mesh_from_numpy(name, verts, quads)
    mesh.shade_smooth()
    obj = _link_mesh(name, mesh)
    mat, bsdf = _principled(f"{name}_mat")
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    noise = nodes.new("ShaderNodeTexNoise")
    noise.inputs["Scale"].default_value = 2.0
    ramp = _ramp(nodes, [PALETTE[0], PALETTE[1], PALETTE[3]])
    links.new(noise.outputs["Fac"], ramp.inputs["Fac"])
    ramp.color_ramp.elements[1].position = 0.45
    ramp.color_ramp.elements[2].position = 0.55
    links.new(ramp.outputs["Color"], bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = 0.15
    bsdf.inputs["Specular IOR Level"].default_value = 0.5
    obj.data.materials.append(mat)
    _fit(obj)
    return obj


def _box_material(i: int) -> bpy.types.Material:
    """A rough face colour with a finer checker in a darker shade of it, for texture."""
    mat, bsdf = _principled(f"box_face_{i}")
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    checker = nodes.new("ShaderNodeTexChecker")
    checker.inputs["Scale"].default_value = 4.0
    base = PALETTE[i % len(PALETTE)]
    checker.inputs["Color1"].default_value = base
    checker.inputs["Color2"].default_value = tuple(0.45 * c for c in base[:3]) + (1.0,)
    coord = nodes.new("ShaderNodeTexCoord")
    links.new(coord.outputs["Object"], checker.inputs["Vector"])
    links.new(checker.outputs["Color"], bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = 0.8
    bsdf.inputs["Specular IOR Level"].default_value = 0.3
    return mat


def make_box(name: str = "box") -> bpy.types.Object:
    """A sharp-edged, flat-shaded box, rotated off-axis, one colour per face.

    Side 1.1 keeps the half-diagonal (0.95) inside [-1, 1]^3 under any rotation.
    """
    mesh = bpy.data.meshes.new(name)
    bm = bmesh.new()
    bmesh.ops.create_cube(bm, size=1.1)
    for i, face in enumerate(bm.faces):
        face.material_index = i
        face.smooth = False
    bm.to_mesh(mesh)
    bm.free()
    obj = _link_mesh(name, mesh)
    for i in range(6):
        obj.data.materials.append(_box_material(i))
    obj.matrix_world = Euler((math.radians(20.0), math.radians(-15.0), math.radians(30.0))).to_matrix().to_4x4()
    bpy.context.view_layer.update()
    return obj


def _solid_material(name: str, color: tuple[float, ...], roughness: float, metallic: float,
                    specular: float = 0.5) -> bpy.types.Material:
    mat, bsdf = _principled(name)
    bsdf.inputs["Base Color"].default_value = color
    bsdf.inputs["Roughness"].default_value = roughness
    bsdf.inputs["Metallic"].default_value = metallic
    bsdf.inputs["Specular IOR Level"].default_value = specular
    return mat


def _torus(bm: bmesh.types.BMesh, major: float, minor: float, n_u: int = 64, n_v: int = 24) -> list:
    """Quads of a torus around Z added to `bm`; returns its faces (bmesh has no torus operator)."""
    u, v = np.meshgrid(np.linspace(0, 2 * np.pi, n_u, endpoint=False),
                       np.linspace(0, 2 * np.pi, n_v, endpoint=False), indexing="ij")
    r = major + minor * np.cos(v)
    pts = np.stack([r * np.cos(u), r * np.sin(u), minor * np.sin(v)], axis=-1).reshape(-1, 3)
    verts = [bm.verts.new(p) for p in pts.tolist()]
    faces = []
    for i in range(n_u):
        for j in range(n_v):
            i1, j1 = (i + 1) % n_u, (j + 1) % n_v
            faces.append(bm.faces.new([verts[i * n_v + j], verts[i1 * n_v + j],
                                       verts[i1 * n_v + j1], verts[i * n_v + j1]]))
    return faces


def _place(bm: bmesh.types.BMesh, faces: list, matrix: Matrix, material: int, smooth: bool) -> None:
    """Move one part's vertices by `matrix` and give its faces a material slot and shading."""
    verts = list({v for f in faces for v in f.verts})
    bmesh.ops.transform(bm, matrix=matrix, verts=verts)
    for f in faces:
        f.material_index, f.smooth = material, smooth


def _new_faces(bm: bmesh.types.BMesh, before: int) -> list:
    bm.faces.ensure_lookup_table()
    return [bm.faces[i] for i in range(before, len(bm.faces))]


def make_materials(name: str = "materials") -> bpy.types.Object:
    """Three parts in one mesh, one per kind of surface a relightable material must get right.

    A rough textured dielectric sphere (cell colours), a glossy blue dielectric bevelled cube and
    a gold metal torus stand in a triangle around Z, so every camera sees at least two of them.
    One object keeps the ground-truth mesh and the fit the same as for the single-part objects.
    """
    bm = bmesh.new()
    bmesh.ops.create_uvsphere(bm, u_segments=48, v_segments=24, radius=0.42)
    sphere = _new_faces(bm, 0)
    n = len(bm.faces)
    cube = bmesh.ops.create_cube(bm, size=0.62)
    bmesh.ops.bevel(bm, geom=list({e for v in cube["verts"] for e in v.link_edges}), offset=0.08,
                    segments=3, affect="EDGES", profile=0.5)
    cube_faces = _new_faces(bm, n)
    torus = _torus(bm, major=0.3, minor=0.12)
    at = [(0.5 * math.cos(math.radians(a)), 0.5 * math.sin(math.radians(a))) for a in (90.0, 210.0, 330.0)]
    def turn(x: float, z: float) -> Matrix:
        return Euler((math.radians(x), 0.0, math.radians(z))).to_matrix().to_4x4()

    _place(bm, sphere, Matrix.Translation((*at[0], 0.0)), 0, True)
    _place(bm, cube_faces, Matrix.Translation((*at[1], -0.1)) @ turn(0.0, 30.0), 1, True)
    _place(bm, torus, Matrix.Translation((*at[2], 0.05)) @ turn(60.0, -30.0), 2, True)
    mesh = bpy.data.meshes.new(name)
    bm.to_mesh(mesh)
    bm.free()
    obj = _link_mesh(name, mesh)
    obj.data.materials.append(cell_material(f"{name}_rough", roughness=0.8, specular=0.3, scale=5.0))
    obj.data.materials.append(_solid_material(f"{name}_glossy", (0.03, 0.18, 0.75, 1.0), 0.08, 0.0))
    obj.data.materials.append(_solid_material(f"{name}_metal", (1.0, 0.71, 0.29, 1.0), 0.22, 1.0))
    _fit(obj)
    return obj


def make_object(name: str) -> bpy.types.Object:
    """Build the named procedural object in the current scene."""
    if name == "suzanne":
        return make_suzanne()
    if name == "suzanne_specular":
        return make_suzanne("suzanne_specular", roughness=0.2, specular=0.8)
    if name == "torus_knot":
        return make_torus_knot()
    if name == "box":
        return make_box()
    if name == "materials":
        return make_materials()
    raise ValueError(f"unknown synth object {name!r}")


def world_triangles(obj: bpy.types.Object) -> tuple[np.ndarray, np.ndarray]:
    """The evaluated (modifiers applied) mesh of `obj` as world-space vertices and triangles."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    ev = obj.evaluated_get(depsgraph)
    mesh = ev.to_mesh()
    try:
        mesh.calc_loop_triangles()
        co = np.empty(len(mesh.vertices) * 3, np.float64)
        mesh.vertices.foreach_get("co", co)
        tris = np.empty(len(mesh.loop_triangles) * 3, np.int64)
        mesh.loop_triangles.foreach_get("vertices", tris)
    finally:
        ev.to_mesh_clear()
    m = np.array(obj.matrix_world)
    co = co.reshape(-1, 3) @ m[:3, :3].T + m[:3, 3]
    return co, tris.reshape(-1, 3)
