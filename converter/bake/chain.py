"""The bake stage's work: LOD chain, one atlas per LOD, every map, the light, in that order.

Order matters: the material fit sees every photo pixel's visibility of the light (shadow maps of
LOD0), so the albedo does not keep the shadows the renderer adds again; then every LOD reads its
maps off the same high-detail surface and the same material field, so levels agree.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..capture.model import Frame
from ..config import Config
from ..errors import ExtractionError
from ..mesh import Mesh
from .ao import bake_ao_chain
from .asset import EnvLight, Lod, MaterialMaps
from .envlight import sh9, to_equirect
from .envmap import EnvMapLight, envmap_equirect
from .lod import DEFAULT_RATIOS, lod_chain, lod_texture_sizes, screen_coverages
from .normalmap import bake_normal_map, ensure_frame
from .pbr import PbrFit, bake_material_maps, fit_pbr, gather_samples
from .surface import Surface
from .texels import Texels, texels_on_surface
from .texture import bake_from_field, fit_to_photos, pad_texture, resize, to_uint8_srgb
from .uv import unwrap

Progress = Callable[[str, int, int], None]
CAPTURED_MAX = 1024  # the field colour is baked at most this size, then upsampled: photos hold no more


@dataclass
class BakeResult:
    lods: list[Lod]
    light: EnvLight | None
    pbr_history: list[dict]


def bake_lods(tf, mesh: Mesh, frames: list[Frame], surface: Surface, cfg: Config,
              progress: Progress | None = None) -> BakeResult:
    say = progress or (lambda *_: None)
    # beyond the default 4 levels, keep quartering the triangle count
    meshes = lod_chain(mesh, cfg.lods, ratios=tuple(0.25 ** k for k in range(cfg.lods)) if cfg.lods > 4 else DEFAULT_RATIOS)
    sizes = lod_texture_sizes(cfg.texture_size, len(meshes))
    coverage = screen_coverages(meshes)
    uv_meshes = []
    for k, (m, size) in enumerate(zip(meshes, sizes)):
        say(f"uv LOD{k}", k, len(meshes))
        uv_meshes.append(unwrap(m, size))
    lod0 = uv_meshes[0]
    texels = []
    if cfg.pbr:
        for k, (m, size) in enumerate(zip(uv_meshes, sizes)):
            say(f"texels on the surface LOD{k}", k, len(uv_meshes))
            ensure_frame(m)  # the normal map's frame: the texels' mesh normals must be its normals
            texels.append(texels_on_surface(m, size, surface))
        say("ambient occlusion", 0, 1)
    aos = bake_ao_chain(uv_meshes, sizes, lod0, texels=texels) if cfg.pbr else []
    fit = None
    if cfg.pbr:
        samples = gather_samples(lod0, frames, surface, cfg.downscale, ao=lambda uv: sample_map(aos[0], uv))
        if len(samples.points) == 0:
            raise ExtractionError("the extracted surface covers none of the photos' object pixels: the field "
                                  "did not learn the object", hint="check the poses and masks; train longer "
                                  "(--preset balanced); for scenes walked along use --blocks auto")
        fit = fit_pbr(samples, surface_box(lod0)[0], surface_box(lod0)[1], steps=cfg.pbr_steps,
                      seed=cfg.seed, light_model=cfg.pbr_light, progress=lambda d, t: say("material + light", d, t),
                      device=tf.field.log_beta.device)
    lods = []
    for k, (m, size) in enumerate(zip(uv_meshes, sizes)):
        say(f"maps LOD{k}", k, len(uv_meshes))
        captured = _captured(tf, m, size, frames, cfg)
        maps = MaterialMaps(captured=captured)
        if fit is not None:
            maps.normal, _ = bake_normal_map(m, size, surface, texels=texels[k])
            maps.base_color, maps.orm = _material(fit, texels[k], aos[k])
        lods.append(Lod(m, maps, coverage[k]))
    light = None
    if fit is not None:
        env = envmap_equirect(fit.light, 64) if isinstance(fit.light, EnvMapLight) else to_equirect(fit.light, 64)
        light = EnvLight(env, sh9(env).astype(np.float32))
    return BakeResult(lods, light, fit.history if fit else [])


def surface_box(mesh: Mesh, margin: float = 0.05) -> tuple[np.ndarray, float]:
    """Corner and side of a cube around the mesh: the material field's domain."""
    lo, hi = mesh.vertices.min(0), mesh.vertices.max(0)
    side = float((hi - lo).max()) * (1 + 2 * margin)
    centre = (lo + hi) / 2
    return (centre - side / 2).astype(np.float32), side


def sample_map(img: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup of a (H, W[, C]) float map at glTF uvs (P, 2)."""
    h, w = img.shape[:2]
    x = np.clip(uv[:, 0] * w - 0.5, 0, w - 1)
    y = np.clip(uv[:, 1] * h - 0.5, 0, h - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = x - x0, y - y0
    if img.ndim == 3:
        fx, fy = fx[:, None], fy[:, None]
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def _captured(tf, mesh: Mesh, size: int, frames: list[Frame], cfg: Config) -> np.ndarray:
    """The photo-lit texture: field colour, padded, fitted to the photos (bake.texture)."""
    small = min(size, CAPTURED_MAX)
    tex, covered = bake_from_field(tf, mesh, small)
    tex = pad_texture(tex, covered)
    if cfg.texture_fit_iterations > 0:
        tex = fit_to_photos(tex, covered, mesh, frames, cfg.texture_fit_iterations, cfg.downscale)
    return to_uint8_srgb(resize(tex, size))


def _material(fit: PbrFit, texels: Texels, ao: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Base colour (sRGB) and ORM maps of one LOD from the material field at its texels' points
    on the surface, padded."""
    hit = texels.hit
    size = hit.shape[0]
    base, orm = bake_material_maps(fit, texels.point, ao[hit])
    out_b = np.zeros((size, size, 3), np.float32)
    out_o = np.zeros((size, size, 3), np.float32)
    out_b[hit], out_o[hit] = base, orm
    return to_uint8_srgb(pad_texture(out_b, hit)), to_uint8_srgb(pad_texture(out_o, hit))
