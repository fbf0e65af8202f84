"""Images, textures and materials of one LOD, and the `captured` material variant.

Each LOD gets a relightable default material (glTF metallic-roughness PBR from the baked albedo,
ORM and normal maps) so any viewer can light the asset, and an unlit material over the photo-lit
`captured` texture, reachable through `KHR_materials_variants` as the variant `captured`: that is
the look of the photos themselves, which relighting cannot reproduce exactly. An LOD baked without
PBR maps (older code paths) keeps the unlit captured material as its default and needs no variant.
"""
from __future__ import annotations

import hashlib
import io

import numpy as np
import pygltflib as gl
from PIL import Image

from ..bake.asset import MaterialMaps
from .container import Blob
from .neural import EXTENSION as NEURAL, NeuralMaterial

UNLIT = "KHR_materials_unlit"
VARIANTS = "KHR_materials_variants"
CAPTURED_VARIANT = "captured"


def encode_png(img: np.ndarray) -> bytes:
    """PNG bytes of an (H, W, 3 or 4) uint8 image (colour space is the material slot's business)."""
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img), mode="RGBA" if img.shape[2] == 4 else "RGB").save(
        out, format="PNG", optimize=img.shape[2] == 4)
    return out.getvalue()


def has_pbr(maps: MaterialMaps) -> bool:
    """True when any relightable map was baked, i.e. the LOD gets a PBR default material."""
    return any(m is not None for m in (maps.base_color, maps.orm, maps.normal))


def _sampler(gltf: gl.GLTF2) -> int:
    """The one sampler every texture shares (trilinear, clamped: atlas charts must not wrap)."""
    if not gltf.samplers:
        gltf.samplers.append(gl.Sampler(magFilter=gl.LINEAR, minFilter=gl.LINEAR_MIPMAP_LINEAR,
                                        wrapS=gl.CLAMP_TO_EDGE, wrapT=gl.CLAMP_TO_EDGE))
    return 0


def _data_sampler(gltf: gl.GLTF2) -> int:
    """Bilinear without mipmaps, clamped: feature textures are data the decoder was trained to
    read at one resolution, and averaging features is not averaging colours."""
    for i, s in enumerate(gltf.samplers):
        if s.minFilter == gl.LINEAR and s.magFilter == gl.LINEAR:
            return i
    _sampler(gltf)
    gltf.samplers.append(gl.Sampler(magFilter=gl.LINEAR, minFilter=gl.LINEAR,
                                    wrapS=gl.CLAMP_TO_EDGE, wrapT=gl.CLAMP_TO_EDGE))
    return len(gltf.samplers) - 1


def _environment_sampler(gltf: gl.GLTF2) -> int:
    """Bilinear without mipmaps, repeating around (u is the azimuth) and clamped at the poles."""
    for i, s in enumerate(gltf.samplers):
        if (s.minFilter, s.magFilter, s.wrapS, s.wrapT) == (gl.LINEAR, gl.LINEAR, gl.REPEAT, gl.CLAMP_TO_EDGE):
            return i
    _sampler(gltf)
    gltf.samplers.append(gl.Sampler(magFilter=gl.LINEAR, minFilter=gl.LINEAR, wrapS=gl.REPEAT,
                                    wrapT=gl.CLAMP_TO_EDGE))
    return len(gltf.samplers) - 1


def _environment_texture(gltf: gl.GLTF2, blob: Blob, env: np.ndarray) -> int:
    """The neural environment's texture, embedded once: LODs share LOD0's decoder and with it
    one environment, so a texture of the same content is reused by name."""
    name = "neural_environment_" + hashlib.sha1(np.ascontiguousarray(env).tobytes()).hexdigest()[:12]
    for i, tex in enumerate(gltf.textures):
        if tex.name == name:
            return i
    return add_texture(gltf, blob, env, name, _environment_sampler(gltf))


def add_texture(gltf: gl.GLTF2, blob: Blob, img: np.ndarray, name: str, sampler: int | None = None) -> int:
    """Embed `img` as a PNG image and return the index of a texture reading it."""
    view = blob.view(encode_png(img))
    gltf.images.append(gl.Image(name=name, bufferView=view, mimeType=gl.IMAGEPNG))
    gltf.textures.append(gl.Texture(sampler=_sampler(gltf) if sampler is None else sampler,
                                    source=len(gltf.images) - 1, name=name))
    return len(gltf.textures) - 1


def neural_extension(gltf: gl.GLTF2, blob: Blob, neural: NeuralMaterial, suffix: str) -> dict:
    """`NRC_neural_material` JSON with its two feature textures (and environment) embedded."""
    a, b = neural.textures()
    sampler = _data_sampler(gltf)
    ids = (add_texture(gltf, blob, a, f"features0{suffix}", sampler),
           add_texture(gltf, blob, b, f"features1{suffix}", sampler))
    env = None if neural.environment is None else _environment_texture(gltf, blob, neural.environment)
    return neural.to_json(ids, env)


def add_captured_material(gltf: gl.GLTF2, blob: Blob, captured: np.ndarray, suffix: str,
                          neural: NeuralMaterial | None = None) -> int:
    """Unlit material over the photo-lit texture; the PBR block keeps viewers without the unlit
    extension close to it (no metal, fully rough). With a neural material, readers that know
    `NRC_neural_material` decode it instead; the unlit texture is everyone else's fallback."""
    tex = add_texture(gltf, blob, captured, f"captured{suffix}")
    pbr = gl.PbrMetallicRoughness(baseColorTexture=gl.TextureInfo(index=tex, texCoord=0),
                                  metallicFactor=0.0, roughnessFactor=1.0)
    extensions = {UNLIT: {}}
    if neural is not None:
        extensions[NEURAL] = neural_extension(gltf, blob, neural, suffix)
    gltf.materials.append(gl.Material(name=f"captured{suffix}", pbrMetallicRoughness=pbr,
                                      extensions=extensions))
    return len(gltf.materials) - 1


def add_pbr_material(gltf: gl.GLTF2, blob: Blob, maps: MaterialMaps, suffix: str) -> int:
    """Metallic-roughness material from the baked maps. The ORM image is one texture read twice:
    by `metallicRoughnessTexture` (G roughness, B metallic) and by `occlusionTexture` (R), the
    packing glTF was designed for. Missing maps fall back to factors: white albedo, no metal,
    fully rough, no occlusion, flat normals."""
    pbr = gl.PbrMetallicRoughness(metallicFactor=0.0, roughnessFactor=1.0)
    mat = gl.Material(name=f"pbr{suffix}", pbrMetallicRoughness=pbr)
    if maps.base_color is not None:
        tex = add_texture(gltf, blob, maps.base_color, f"base_color{suffix}")
        pbr.baseColorTexture = gl.TextureInfo(index=tex, texCoord=0)
    if maps.orm is not None:
        tex = add_texture(gltf, blob, maps.orm, f"orm{suffix}")
        pbr.metallicRoughnessTexture = gl.TextureInfo(index=tex, texCoord=0)
        pbr.metallicFactor = 1.0  # the texture's B and G are the values, not a scale of 0 and 1
        mat.occlusionTexture = gl.OcclusionTextureInfo(index=tex, texCoord=0, strength=1.0)
    if maps.normal is not None:
        tex = add_texture(gltf, blob, maps.normal, f"normal{suffix}")
        mat.normalTexture = gl.NormalMaterialTexture(index=tex, texCoord=0, scale=1.0)
    gltf.materials.append(mat)
    return len(gltf.materials) - 1


def add_lod_materials(gltf: gl.GLTF2, blob: Blob, maps: MaterialMaps, suffix: str
                      ) -> tuple[int, int | None]:
    """(default material, captured-variant material or None) for one LOD's primitive."""
    if not has_pbr(maps):
        return add_captured_material(gltf, blob, maps.captured, suffix, maps.neural), None
    default = add_pbr_material(gltf, blob, maps, suffix)
    return default, add_captured_material(gltf, blob, maps.captured, suffix, maps.neural)


def variant_mapping(material: int) -> dict:
    """Primitive-level KHR_materials_variants: variant 0 (`captured`) shows `material`."""
    return {VARIANTS: {"mappings": [{"material": material, "variants": [0]}]}}


def variants_root() -> dict:
    """Document-level KHR_materials_variants listing the one variant."""
    return {VARIANTS: {"variants": [{"name": CAPTURED_VARIANT}]}}
