"""Flat run configuration and the three presets.

One flat dataclass on purpose (nerfstudio's nested configs are its best-known pain): every knob is
a field with a default, a preset only overrides a few of them, and `--set key=value` reaches any.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass
class Config:
    preset: str = "balanced"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # CPU threads (0: every core); 1 makes repeated runs agree far more closely
    # --- training ---
    steps: int = 2000  # balanced: held-out field PSNR is flat from ~1250 (38.3-38.9 dB to 2500)
    time_budget_s: float = 420.0  # training stops at whichever comes first (the opaque first fit counts in it)
    batch_rays: int = 4096
    lr: float = 1e-2
    lr_final_ratio: float = 0.05
    hash_levels: int = 16
    hash_features: int = 2
    hash_log2_table: int = 19
    hash_max_resolution: int = 2048
    hidden: int = 64
    geometry_max_resolution: int = 256  # finest hash level the density may use
    # --- surface (SDF) ---
    sdf_init_radius: float = 0.3  # the field starts as a sphere of this radius in the unit cube
    beta_min_steps: float = 0.5  # sharpest VolSDF beta, in march steps (sharper aliases between samples)
    neus_from: float = 0.4  # training fraction from which NeuS opacities replace VolSDF density
    eikonal_weight: float = 0.1
    eikonal_points: int = 2048
    curvature_weight: float = 2e-5  # measured sweep in docs/design.md: heavier smoothing costs PSNR
    # what the colour head sees besides the point: "reflect" (the ray mirrored about the SDF normal,
    # Ref-NeRF style: reflections no longer bend glossy surfaces; fields/reflect.py) or "view" (the
    # ray direction: ~1.8x cheaper per step on a CPU, worse fields: docs/design.md)
    color_input: str = "reflect"
    normal_gradients: bool = True  # "reflect": the colour loss also shapes the surface through its normals
    coarse_levels: int = 4  # geometry hash levels active at the start (coarse-to-fine)
    coarse_to_fine: float = 0.4  # training fraction by which every geometry level is active
    background_coarse_to_fine: float = 0.8  # ... every background level (after the geometry: see fields/background)
    background_max_resolution: int = 2048  # finest background level (opaque photos)
    matting_share: float = 0.25  # opaque photos: a first fit of this share of the steps (at most 300,
    # on a small field) estimates masks for the visual hull (train.matting); 0 = start from a sphere
    sure_object_weight: float = 0.1  # opaque photos: opacity pulled to 1 on rays the first fit renders
    # opaque and that cross its voted hull (train.matting.sure_object); 0 = off
    early_stop_patience: int = 4  # held-out checks without improvement before stopping (0: never)
    early_stop_min_delta: float = 0.05
    march_steps: int = 512  # sample spacing = bbox diagonal / march_steps
    occupancy_res: int = 128
    downscale: int = 1
    eval_every: int = 250
    checkpoint_every: int = 250  # training checkpoints (WORK/field.partial.pt): every N steps...
    checkpoint_every_s: float = 60.0  # ... or every N seconds, whichever comes first
    # --- extraction ---
    mc_resolution: int = 256
    max_triangles: int = 80_000
    min_component_ratio: float = 0.02  # drop components below this share of the total area
    # with masks: move the mesh along its normals so its anti-aliased silhouettes match the photos'
    # alpha (one offset, at most 0.2 % of the diagonal; bake.silhouette); off: the field's zero level set
    silhouette_fit: bool = True
    # --- baking ---
    texture_size: int = 2048  # LOD0's maps; each lower LOD halves it (bake.lod.lod_texture_sizes)
    lods: int = 4  # LOD0 + 3 coarser levels at ~25 / 6 / 1.5 % of its triangles
    pbr: bool = True  # estimate light + PBR material (and bake normal/ORM maps); off: captured look only
    pbr_steps: int = 1500  # material + light fit iterations
    # light model of the material fit: "sg" (128 spherical Gaussians) or "map" (64 x 128 equirect,
    # split sum; bake.envmap). "sg" relit both benchmark scenes better (docs/design.md)
    pbr_light: str = "sg"
    texture_fit_iterations: int = 4  # least-squares fit to the training photos (0: field colour only)
    neural: bool = True  # distil the view-dependent captured look (NRC_neural_material)
    neural_steps: int = 4000  # LOD0's distillation iterations; lower LODs get a third
    neural_field_views: int = 40  # field renders from cameras between the photos, as extra supervision
    # the decoder's view input: nv (n.v only; with the environment below, which reads the view
    # mirrored about NORMAL), sh2_reflected_nv (SH2 of that mirror plus n.v and the normal: the
    # version 1 material), sh2_reflected (the mirror alone) or sh2 (docs/neural_material.md)
    neural_encoding: str = "nv"
    # a learnt environment the decoder modulates (equirect, at most this many texels around, half
    # as many high, fewer where the samples do not support it: bake.neural.environment_size; 0:
    # none): colour = sigmoid(a + b * env(mirror)); needs a mirrored encoding. With nv it
    # held out 1.1 dB better than sh2_reflected_nv without it, at 776 FLOP against 965 (design.md);
    # its MLP is one layer of 28 since (972 FLOP, +0.2-0.3 dB: bake.neural.ENV_HIDDEN)
    neural_environment: int = 128
    # each photo pixel fitted as the mean of footprint x footprint sub-samples (bake.footprint), as
    # a camera integrates it and an anti-aliased render shows it; 1: the pixel centre alone
    neural_footprint: int = 2

    def replace(self, **changes) -> Config:
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, dict] = {
    "tiny": dict(steps=400, time_budget_s=300, batch_rays=2048, hash_levels=8, hash_log2_table=15,
                 hash_max_resolution=256, march_steps=192, occupancy_res=48, eval_every=0,
                 mc_resolution=96, max_triangles=8000, texture_size=256, lods=2, pbr_steps=200,
                 neural_steps=200, neural_field_views=4),
    "fast": dict(steps=1200, time_budget_s=90, hash_levels=12, hash_log2_table=18,
                 hash_max_resolution=1024, march_steps=384, mc_resolution=192, max_triangles=40_000,
                 texture_size=1024, pbr_steps=300,
                 neural_steps=800, neural_field_views=16),
    "balanced": dict(),
    "quality": dict(steps=8000, time_budget_s=1800, batch_rays=8192, march_steps=768,
                    mc_resolution=384, max_triangles=200_000, texture_size=2048),
}


CHOICES = {"pbr_light": ("map", "sg"), "color_input": ("reflect", "view"),
           "neural_encoding": ("sh2_reflected_nv", "sh2_reflected", "sh2", "nv")}


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def make_config(preset: str = "balanced", overrides: dict | None = None) -> Config:
    """The preset's config with `overrides` (strings from the CLI are coerced to the field type)."""
    if preset not in PRESETS:
        raise KeyError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    cfg = Config(preset=preset).replace(**PRESETS[preset])
    types = {f.name: f.type for f in dataclasses.fields(Config)}
    for key, value in (overrides or {}).items():
        if key not in types:
            raise KeyError(f"unknown setting {key!r}")
        if isinstance(value, str):
            value = {"int": int, "float": float, "str": str, "bool": _parse_bool}[types[key]](value)
        cfg = cfg.replace(**{key: value})
    for key, allowed in CHOICES.items():
        if getattr(cfg, key) not in allowed:
            raise ValueError(f"{key} must be one of {', '.join(allowed)}, got {getattr(cfg, key)!r}")
    _check_environment(cfg)
    if not 1 <= cfg.neural_footprint <= 4:
        raise ValueError(f"neural_footprint must be 1 to 4 sub-samples per pixel side, got {cfg.neural_footprint}")
    return cfg


def _check_environment(cfg: Config) -> None:
    width = cfg.neural_environment
    if width and (width < 8 or width > 1024 or width & (width - 1)):
        raise ValueError(f"neural_environment must be 0 or a power of two from 8 to 1024, got {width}")
    if width and cfg.neural_encoding == "sh2":
        raise ValueError("neural_environment needs a mirrored neural_encoding (nv, sh2_reflected_nv or "
                         "sh2_reflected); with sh2 also set neural_environment=0")
    if not width and cfg.neural_encoding == "nv":
        raise ValueError("neural_encoding nv reads only n.v and needs the environment (neural_environment > 0); "
                         "without one choose sh2_reflected_nv")


def config_from_options(preset: str, sets: list[str], lods: int | None = None, texture_size: int | None = None,
                        pbr: bool = True, neural: bool = True, downscale: int | None = None) -> Config:
    """The Config of a command line: preset, `--set` items and the dedicated options, checked
    (UsageError, exit 2). Shared by `nrconvert CAPTURE` and the farm's unit commands, so the same
    options mean the same settings in both."""
    from .errors import UsageError

    overrides = parse_sets(sets)
    if lods is not None:
        if lods < 1:
            raise UsageError(f"--lods must be at least 1, got {lods}")
        overrides["lods"] = str(lods)
    if texture_size is not None:
        if texture_size < 16 or texture_size & (texture_size - 1):
            raise UsageError(f"--texture-size must be a power of two >= 16, got {texture_size}")
        overrides["texture_size"] = str(texture_size)
    if downscale is not None:
        if downscale < 1:
            raise UsageError(f"--downscale must be at least 1, got {downscale}")
        overrides["downscale"] = str(downscale)
    if not pbr:
        overrides["pbr"] = "false"
    if not neural:
        overrides["neural"] = "false"
    try:
        return make_config(preset, overrides)
    except (KeyError, ValueError) as exc:
        raise UsageError(str(exc).strip("'\"")) from exc


def parse_sets(items: list[str]) -> dict:
    """`--set key=value`, repeatable; one item may also hold several pairs separated by commas, so
    a farm template can pass every setting in one job parameter (`steps=4000,threads=4`)."""
    from .errors import UsageError

    out = {}
    for item in items:
        for pair in filter(None, (p.strip() for p in item.split(","))):
            if "=" not in pair:
                raise UsageError(f"--set expects key=value, got {pair!r}")
            key, value = pair.split("=", 1)
            out[key.strip()] = value.strip()
    return out
