"""Image metrics: PSNR and SSIM, optionally restricted to a pixel mask."""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter


def psnr(pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB for values in [0, 1]; `mask` (H, W) selects the pixels that count."""
    err = (np.asarray(pred, np.float64) - np.asarray(target, np.float64)) ** 2
    if mask is not None:
        err = err[mask.astype(bool)]
    mse = float(err.mean()) if err.size else 0.0
    return float(10 * np.log10(1.0 / max(mse, 1e-12)))


def ssim(pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None, sigma: float = 1.5) -> float:
    """Mean SSIM (Gaussian window, per channel) over all pixels or the masked ones."""
    c1, c2 = 0.01**2, 0.03**2
    vals = []
    for ch in range(pred.shape[-1]):
        x = pred[..., ch].astype(np.float64)
        y = target[..., ch].astype(np.float64)
        mx, my = gaussian_filter(x, sigma), gaussian_filter(y, sigma)
        sxx = gaussian_filter(x * x, sigma) - mx * mx
        syy = gaussian_filter(y * y, sigma) - my * my
        sxy = gaussian_filter(x * y, sigma) - mx * my
        m = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
        vals.append(m)
    smap = np.mean(vals, axis=0)
    return float(smap[mask.astype(bool)].mean() if mask is not None else smap.mean())
