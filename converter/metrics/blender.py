"""Held-out quality of a GLB as Blender (Cycles) renders it: the number users actually see."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from .image import psnr, ssim


def _read(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    img = np.asarray(Image.open(path).convert("RGBA"), dtype=np.float32) / 255.0
    has_alpha = Image.open(path).mode in ("RGBA", "LA")
    return img[..., :3], img[..., 3] if has_alpha else None


def blender_heldout(glb: Path, capture_dir: Path, *, split: str = "test", world: str = "world",
                    samples: int | None = None, keep_dir: Path | None = None, lod: int | None = None,
                    variant: str | None = None, normal_map: bool = True,
                    captured_as_base_color: bool = False) -> dict:
    """Render `glb` from the capture's `split` cameras in Blender and compare with the photos.

    Object pixels are those the photo's alpha (or the synth eval mask) marks as object; both images
    are compared premultiplied, so a silhouette error costs PSNR too. `lod`, `variant`,
    `normal_map` and `captured_as_base_color` choose what is rendered (see
    `nrconvert.synth.glb.glb_options`): relighting is `split='test_relight', world='relight_world'`.
    """
    from ..capture.load import load_capture
    from ..synth import render_glb

    capture = load_capture(Path(capture_dir))
    frames = capture.split(split) if split in ("train", "test") else capture.test
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(keep_dir) if keep_dir else Path(tmp)
        paths = render_glb(Path(glb), Path(capture_dir), out, split=split, world=world, samples=samples,
                           lod=lod, variant=variant, normal_map=normal_map,
                           captured_as_base_color=captured_as_base_color)
        views = [_compare(p, _gt_path(capture_dir, split, f.image_path.name), _mask(capture, f))
                 for p, f in zip(paths, frames)]
    keys = views[0].keys() if views else []
    return {"views": len(views), **{k: float(np.mean([v[k] for v in views])) for k in keys}}


def _gt_path(capture_dir: Path, split: str, name: str) -> Path:
    return Path(capture_dir) / split / name


def _mask(capture, frame) -> Path | None:
    from .report import eval_masks

    return eval_masks(capture).get(str(frame.image_path))


def _compare(render_path: Path, gt_path: Path, mask_path: Path | None) -> dict:
    render, r_alpha = _read(render_path)
    gt, g_alpha = _read(gt_path)
    if mask_path is not None:
        g_alpha = np.asarray(Image.open(mask_path).convert("L"), dtype=np.float32) / 255.0
    if g_alpha is None:
        raise ValueError(f"{gt_path}: no alpha or eval mask: object pixels unknown")
    return compare_images(render, r_alpha, gt, g_alpha)


def compare_images(render: np.ndarray, r_alpha: np.ndarray | None, photo: np.ndarray,
                   p_alpha: np.ndarray) -> dict:
    """PSNR/SSIM on the pixels `p_alpha` marks as object, both images composited the same way.

    A render with alpha (transparent film, a masked capture) is compared premultiplied with the
    photo premultiplied by its alpha: a silhouette error costs PSNR. A render without alpha shows
    the world behind the object, as an opaque photo shows its background: both are compared as
    they are, so the silhouette pixels blend object and background on both sides. Premultiplying
    only the photo there (as this once did) charged every silhouette pixel for the background the
    photo itself shows: the masked-capture GLB scored 26.04 instead of 28.09 dB against the
    opaque photos of the same scene (2026-11-27, docs/design.md)."""
    obj = p_alpha >= 0.5
    if r_alpha is None:
        r, g = render, photo
    else:
        r, g = render * r_alpha[..., None], photo * p_alpha[..., None]
    return {"psnr_object": psnr(r[obj], g[obj]), "ssim_object": ssim(r, g, obj), "psnr_full": psnr(r, g)}
