"""Turn a plain glTF import of an nrconvert GLB into an asset (called by importer.py).

- asset root: an Empty named after the asset; the LOD objects (and capture cameras) become its
  children, so the asset moves as one and stays selectable while levels are hidden;
- LOD set from `MSFT_lod` on LOD0 (ids + `extras.MSFT_screencoverage`), else from node names
  `<name>_LOD<k>`; Blender puts the lower levels in an "Orphan Nodes" collection (4.5+; 4.2 links
  every node into the scene collection), they move to LOD0's collection;
- metadata (`asset.extras.nrconvert`) on the root and the scene;
- the estimated light (`environment.uri`, an .hdr beside the GLB) as a world;
- NRC_neural_material: feature textures (and a 1.1 environment's texture, one image per texture
  however many materials share it, kept as `Material.nrconvert.environment_image`)
  decoded by Blender from the GLB's bytes, checked with the vendored reference parser, then
  `neural_nodes.apply_neural` (the preview node group).
Each step that finds bad data warns through `note` and leaves the plain import's fallback.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path, PurePosixPath

import bpy
import numpy as np
from mathutils import Matrix

from . import glb_io, lod
from ._vendor import frames, neural

MSFT_LOD, COVERAGE_KEY = "MSFT_lod", "MSFT_screencoverage"
VARIANTS, UNLIT = "KHR_materials_variants", "KHR_materials_unlit"
CAMERAS_NODE = "capture_cameras"
LOD_NAME = re.compile(r"^(.*)_LOD(\d+)$")
NOMINAL_VIEW = (0.36, 0.36 * 9 / 16)  # tan(half fov) of a 50 mm lens on 36 mm, 16:9
BLENDER_TO_GLTF = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def _nodes(doc: dict) -> list:
    nodes = doc.get("nodes")
    return nodes if isinstance(nodes, list) else []


def default_coverage(n: int) -> list[float]:
    """Thresholds for a chain whose file gives none: 4x less screen area per level, last 0."""
    return [0.5 * 0.25 ** k for k in range(n - 1)] + [0.0]


def valid_coverage(values, n: int) -> bool:
    if not isinstance(values, list) or len(values) != n:
        return False
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
               and 0.0 <= v <= 1.0 for v in values):
        return False
    return all(b < a for a, b in zip(values, values[1:]))


def _mesh_object(nodes: dict, index):
    obj = nodes.get(index) if isinstance(index, int) and not isinstance(index, bool) else None
    return obj if obj is not None and obj.type == "MESH" else None


def lod_chain(doc: dict, nodes: dict, note) -> tuple[list[int], list[float]]:
    """(node indices LOD0 first, coverage thresholds) from MSFT_lod, else node names."""
    lod0 = next((i for i, n in enumerate(_nodes(doc)) if isinstance(n, dict)
                 and isinstance(n.get("extensions"), dict) and MSFT_LOD in n["extensions"]), None)
    chain = None
    if lod0 is not None:
        ids = doc["nodes"][lod0]["extensions"][MSFT_LOD].get("ids")  # a dict: see glb_io
        candidate = [lod0] + (ids if isinstance(ids, list) else [None])
        if all(_mesh_object(nodes, i) is not None for i in candidate) and len(set(candidate)) == len(candidate):
            chain = candidate
        else:
            note("WARNING", f"MSFT_lod ids {ids!r} on node {lod0} do not name LOD mesh nodes; "
                 "LODs taken from node names")
    if chain is None:
        chain = _chain_by_name(doc, nodes)
    extras = (_nodes(doc)[chain[0]].get("extras") or {}) if chain else {}
    coverage = extras.get(COVERAGE_KEY) if isinstance(extras, dict) else None
    if not valid_coverage(coverage, len(chain)):
        if len(chain) > 1:
            note("WARNING", f"{COVERAGE_KEY} {coverage!r} is not {len(chain)} decreasing numbers "
                 "in [0, 1]; default thresholds used")
        coverage = default_coverage(len(chain))
    return chain, [float(c) for c in coverage]


def _chain_by_name(doc: dict, nodes: dict) -> list[int]:
    named = {}
    for i, n in enumerate(_nodes(doc)):
        m = LOD_NAME.match(str(n.get("name", ""))) if isinstance(n, dict) else None
        if m and _mesh_object(nodes, i) is not None:
            named.setdefault(int(m.group(2)), i)
    chain = []
    while len(chain) in named:
        chain.append(named[len(chain)])
    if chain:
        return chain
    first = next((i for i in sorted(nodes) if _mesh_object(nodes, i) is not None), None)
    return [first] if first is not None else []


def metadata(doc: dict, note) -> dict:
    extras = (doc.get("asset") or {}).get("extras") if isinstance(doc.get("asset"), dict) else None
    meta = extras.get("nrconvert") if isinstance(extras, dict) else None
    if meta is None:
        note("WARNING", "no asset.extras.nrconvert: not an nrconvert file? Metadata left empty")
        return {}
    if not isinstance(meta, dict):
        note("WARNING", "asset.extras.nrconvert is not an object; ignored")
        return {}
    return meta


def variant_materials(doc: dict, session, node_index: int) -> tuple:
    """(PBR material, captured material) of an LOD node's first primitive (either may be None)."""
    try:
        mesh = glb_io.item(doc, "meshes", _nodes(doc)[node_index].get("mesh"))
        prim = (mesh.get("primitives") or [{}])[0]
    except (ValueError, IndexError, AttributeError):
        return None, None
    default = session.materials.get(prim.get("material")) if isinstance(prim, dict) else None
    names = [v.get("name") for v in (((doc.get("extensions") or {}).get(VARIANTS) or {}).get("variants") or [])
             if isinstance(v, dict)]
    variant = names.index("captured") if "captured" in names else 0
    for mapping in ((prim.get("extensions") or {}).get(VARIANTS) or {}).get("mappings") or []:
        if isinstance(mapping, dict) and variant in (mapping.get("variants") or []):
            return default, session.materials.get(mapping.get("material"))
    try:
        unlit = UNLIT in (glb_io.item(doc, "materials", prim.get("material")).get("extensions") or {})
    except ValueError:
        unlit = False
    return (None, default) if unlit else (default, None)  # an LOD baked without PBR maps


def make_root(context, name: str, lod0):
    """The asset root: LOD0's parent Empty when the file has one (a re-exported asset), else a
    new Empty in LOD0's collection."""
    parent = lod0.parent
    if parent is not None and parent.type == "EMPTY" and not parent.nrconvert.is_asset:
        return parent
    root = bpy.data.objects.new(name, None)
    (lod0.users_collection[0] if lod0.users_collection else context.scene.collection).objects.link(root)
    root.empty_display_type = "PLAIN_AXES"
    root.empty_display_size = max(lod.bounding_sphere(lod0)[1], 0.1)
    return root


def adopt(obj, root, collection) -> None:
    """Move `obj` into the asset's collection and under its root (world transform kept for top
    level objects: the root of a new asset sits at the origin)."""
    if collection is not None and collection not in obj.users_collection:
        collection.objects.link(obj)
        for other in list(obj.users_collection):
            if other != collection:
                other.objects.unlink(obj)
                if other.name.startswith("Orphan Nodes") and not other.objects and not other.children:
                    bpy.data.collections.remove(other)
    if obj.parent is None and obj != root:
        obj.parent = root
        obj.matrix_parent_inverse = root.matrix_world.inverted()


def build_asset(context, session, opts) -> None:
    doc, note, nodes = session.doc, session.note, session.nodes
    meta = metadata(doc, note)
    chain, coverage = lod_chain(doc, nodes, note)
    if not chain:
        note("WARNING", "the file has no mesh node: nothing to set up")
        return
    lod0 = nodes[chain[0]]
    m = LOD_NAME.match(lod0.name)
    name = str(meta.get("name") or (m.group(1) if m else lod0.name))
    root = make_root(context, name, lod0)
    collection = root.users_collection[0] if root.users_collection else None
    group = root.nrconvert
    group.is_asset, group.source_path = True, str(Path(session.path).resolve())
    group.metadata, group.lod_mode = json.dumps(meta), opts.lod_mode
    group.lods.clear()
    _, radius = lod.bounding_sphere(lod0)
    for k, (index, cov) in enumerate(zip(chain, coverage)):
        obj = nodes[index]
        adopt(obj, root, collection)
        level = group.lods.add()
        level.object, level.coverage = obj, cov
        level.distance = lod.distance_for_coverage(cov, radius, *NOMINAL_VIEW)
        level.pbr_material, level.captured_material = variant_materials(doc, session, index)
        for mat, role in ((level.pbr_material, "PBR"), (level.captured_material, "CAPTURED")):
            if mat is not None:
                mat.nrconvert.role, mat.nrconvert.lod = role, k
    _cameras(doc, nodes, root, collection, opts.import_cameras)
    apply_neural_materials(session, root)
    _environment(context, session, root, meta, opts.use_world)
    scene = context.scene
    scene.nrconvert.asset, scene.nrconvert.metadata = root, group.metadata
    scene.nrconvert.glb = group.source_path
    lod.update_scene(scene)


def _cameras(doc, nodes, root, collection, keep: bool) -> None:
    index = next((i for i, n in enumerate(_nodes(doc)) if isinstance(n, dict)
                  and n.get("name") == CAMERAS_NODE), None)
    obj = nodes.get(index) if index is not None else None
    if obj is None:
        return
    if keep:
        adopt(obj, root, collection)
        return
    for child in [obj, *obj.children_recursive]:
        data = child.data
        bpy.data.objects.remove(child)
        if isinstance(data, bpy.types.Camera) and data.users == 0:
            bpy.data.cameras.remove(data)


# ---------------------------------------------------------------- neural material

def load_feature_image(png: bytes, name: str):
    """A Blender image decoded from the GLB's PNG bytes, packed (the exporter writes these very
    bytes back), read as data: Non-Color, channels not premultiplied."""
    image = bpy.data.images.new(name, 8, 8)  # placeholder size: the packed file replaces it
    image.pack(data=png, data_len=len(png))
    image.source = "FILE"
    image.colorspace_settings.name = "Non-Color"
    image.alpha_mode = "CHANNEL_PACKED"
    return image


def rgba8(image, depths: tuple = (32,)) -> np.ndarray:
    """(H, W, 4) uint8 of an RGBA8 image (or another 8-bit one of `depths` bits per pixel), top
    row first; ValueError when it did not decode."""
    w, h = image.size
    if w * h == 0 or not image.has_data:
        raise ValueError(f"texture {image.name!r} does not decode as an image")
    if image.is_float or image.depth not in depths:
        raise ValueError(f"texture {image.name!r} is not {'RGBA8' if depths == (32,) else 'RGB(A)8'} "
                         f"({image.depth} bits per pixel)")
    px = np.empty(w * h * 4, np.float32)
    image.pixels.foreach_get(px)
    return np.clip(np.rint(px * 255.0), 0, 255).astype(np.uint8).reshape(h, w, 4)[::-1]


def _environment_image(session, ext: dict, loaded: dict):
    """The bpy Image of the extension's environment texture (None without one), loaded once per
    texture index into `loaded`; ValueError when the reference or the image is bad."""
    index = neural.environment_texture_index(ext)
    if index is None:
        return None
    if index not in loaded:
        png, _ = glb_io.image_bytes(session.doc, session.binary, index)
        loaded[index] = load_feature_image(png, f"neural_environment{index}")
    return loaded[index]


def _feature_images(session, ext: dict, mat_name: str, loaded: dict) -> tuple:
    """(feature image 0, feature image 1, environment image or None), checked together."""
    refs = ext.get("featureTextures")
    if not isinstance(refs, list) or len(refs) != 2 or not all(isinstance(r, dict) for r in refs):
        raise ValueError("featureTextures must be two texture references")
    images = []
    try:
        for k, ref in enumerate(refs):
            png, _ = glb_io.image_bytes(session.doc, session.binary, ref.get("index"))
            images.append(load_feature_image(png, f"{mat_name}_features{k}"))
        env = _environment_image(session, ext, loaded)
        neural.from_json(ext, tuple(rgba8(img) for img in images),
                         None if env is None else rgba8(env, (24, 32))[..., :3])
    except ValueError:
        for img in images:
            bpy.data.images.remove(img)
        raise
    return (*images, env)


def apply_neural_materials(session, root) -> None:
    """Every material with NRC_neural_material: store it for export, build the preview.
    Environment images no valid material uses are removed at the end."""
    loaded = {}
    for index, mat_json in enumerate(session.doc.get("materials") or []):
        ext = ((mat_json.get("extensions") or {}) if isinstance(mat_json, dict) else {}).get(neural.EXTENSION)
        mat = session.materials.get(index)
        if ext is None or mat is None:
            continue
        try:
            if not isinstance(ext, dict):
                raise ValueError(f"{neural.EXTENSION} must be a JSON object")
            *images, env = _feature_images(session, ext, mat.name, loaded)
        except ValueError as exc:
            session.note("WARNING", f"{mat.name}: {neural.EXTENSION} ignored ({exc}); showing the "
                         "unlit fallback texture")
            continue
        data = mat.nrconvert
        stored = {k: v for k, v in ext.items() if k != "featureTextures"}
        if env is not None:  # the texture index is the file's: the exporter writes its own
            stored["environment"] = {k: v for k, v in ext["environment"].items() if k != "texture"}
        data.neural_json = json.dumps(stored)
        data.feature_image_0, data.feature_image_1 = images
        data.environment_image = env
        data.fallback_image = next((n.image for n in mat.node_tree.nodes
                                    if n.type == "TEX_IMAGE" and n.image is not None), None)
        _preview(session, mat, ext, tuple(images), env)
    for image in loaded.values():
        if image.users == 0:
            bpy.data.images.remove(image)


def _preview(session, mat, ext: dict, images: tuple, environment=None) -> None:
    try:
        from . import neural_nodes
    except ImportError as exc:
        session.note("WARNING", f"{mat.name}: no neural preview in this build ({exc}); "
                     "showing the unlit fallback texture")
        return
    try:
        neural_nodes.apply_neural(mat, ext, images, environment)
    except Exception as exc:  # ValueError for bad data; anything else must not escape either
        session.note("WARNING", f"{mat.name}: neural preview failed ({exc}); showing the unlit "
                     "fallback texture")


# ---------------------------------------------------------------- estimated light

def environment_path(glb_path: str, env) -> Path:
    """The .hdr beside the GLB that `environment.uri` names; ValueError when it cannot be."""
    uri = env.get("uri") if isinstance(env, dict) else None
    if not isinstance(uri, str) or not uri:
        raise ValueError("environment has no uri")
    rel = PurePosixPath(uri.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts or ":" in uri:
        raise ValueError(f"environment uri {uri!r} is not a file beside the GLB")
    path = Path(glb_path).resolve().parent.joinpath(*rel.parts)
    if not path.is_file():
        raise ValueError(f"environment map {path.name} is missing beside the GLB")
    return path


def world_rotation(meta: dict) -> Matrix:
    """Rotation taking Blender world directions to the .hdr's capture frame."""
    m = meta.get("capture_to_asset")
    try:
        capture_to_gltf = np.asarray(m, np.float64)[:3, :3]
        assert capture_to_gltf.shape == (3, 3) and np.isfinite(capture_to_gltf).all()
    except (AssertionError, ValueError, TypeError, IndexError):
        capture_to_gltf = frames.capture_to_gltf_rotation(str(meta.get("up_axis", "z")) if
                                                           meta.get("up_axis") in ("y", "z") else "z")
    rot = frames.nearest_rotation(capture_to_gltf).T @ BLENDER_TO_GLTF
    return Matrix(rot.tolist())


def make_world(name: str, hdr: Path, rotation: Matrix):
    world = bpy.data.worlds.new(name)
    if world.node_tree is None:  # Blender < 5: worlds start without nodes
        world.use_nodes = True
    tree = world.node_tree
    tree.nodes.clear()
    coord = tree.nodes.new("ShaderNodeTexCoord")
    mapping = tree.nodes.new("ShaderNodeMapping")
    env = tree.nodes.new("ShaderNodeTexEnvironment")
    env.image = bpy.data.images.load(str(hdr), check_existing=True)
    bg = tree.nodes.new("ShaderNodeBackground")
    out = tree.nodes.new("ShaderNodeOutputWorld")
    for i, node in enumerate((coord, mapping, env, bg, out)):
        node.location = (-900 + 220 * i, 0)
    mapping.inputs["Rotation"].default_value = rotation.to_euler("XYZ")
    tree.links.new(coord.outputs["Generated"], mapping.inputs["Vector"])
    tree.links.new(mapping.outputs["Vector"], env.inputs["Vector"])
    tree.links.new(env.outputs["Color"], bg.inputs["Color"])
    tree.links.new(bg.outputs["Background"], out.inputs["Surface"])
    return world


def _environment(context, session, root, meta: dict, use_world: bool) -> None:
    if "environment" not in meta:
        return
    try:
        hdr = environment_path(session.path, meta["environment"])
    except ValueError as exc:
        session.note("WARNING", f"{exc}: no estimated-light world")
        return
    root.nrconvert.environment_path = str(hdr)
    if not use_world:
        return
    world = make_world(f"{root.name} estimated light", hdr, world_rotation(meta))
    if world.node_tree.nodes["Environment Texture"].image.size[0] == 0:
        session.note("WARNING", f"{hdr.name} does not decode as an image: no estimated-light world")
        bpy.data.worlds.remove(world)
        return
    context.scene.world = world
