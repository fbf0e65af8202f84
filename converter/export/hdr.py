"""Radiance RGBE (.hdr) writer and reader for the estimated environment light.

The light ships as an equirectangular `.hdr` beside the GLB because glTF has no core way to carry
an environment map, and `.hdr` is what Blender (World > Environment Texture), three.js
(`HDRLoader`/`RGBELoader`) and most DCC tools open directly. Written by this small numpy codec so
the exporter needs no imaging library with HDR support (Pillow has none) and works inside Blender.

RGBE stores one shared 8-bit exponent per pixel, so each channel keeps about 8 bits relative to the
pixel's brightest channel: |decoded - original| <= max(r, g, b) / 256. Scanlines are written flat
(uncompressed), which every RGBE reader accepts; the map is small, so run-length coding would
save little. `read_hdr` also reads the run-length-coded scanlines other tools write.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .container import atomic_write

MAGIC = b"#?RADIANCE"
FORMAT = b"FORMAT=32-bit_rle_rgbe"


def encode_rgbe(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) linear float radiance -> (H, W, 4) uint8 RGBE. Negative values become 0 (RGBE
    has no sign); values past 2^127 saturate."""
    rgb = np.clip(np.asarray(rgb, dtype=np.float64), 0.0, None)
    peak = rgb.max(axis=-1)
    _, exp = np.frexp(peak)  # peak = mantissa * 2**exp, mantissa in [0.5, 1)
    zero = (peak < 1e-32) | (exp < -127)
    exp = np.clip(exp, -127, 127)
    mant = np.floor(rgb * np.ldexp(1.0, 8 - exp)[..., None])
    out = np.empty(rgb.shape[:-1] + (4,), dtype=np.uint8)
    out[..., :3] = np.clip(mant, 0, 255).astype(np.uint8)
    out[..., 3] = (exp + 128).astype(np.uint8)
    out[zero] = 0
    return out


def decode_rgbe(rgbe: np.ndarray) -> np.ndarray:
    """(..., 4) uint8 RGBE -> (..., 3) float32, taking each mantissa at its bucket's centre."""
    rgbe = np.asarray(rgbe, dtype=np.uint8)
    e = rgbe[..., 3].astype(np.int64)
    scale = np.where(e > 0, np.ldexp(1.0, e - 136), 0.0)
    return ((rgbe[..., :3].astype(np.float64) + 0.5) * scale[..., None]).astype(np.float32)


def hdr_bytes(rgb: np.ndarray) -> bytes:
    """The whole .hdr file for an (H, W, 3) image, row 0 at the top ("-Y H +X W")."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) == 0:
        raise ValueError(f"an HDR image must be (H, W, 3), got {rgb.shape}")
    if not np.isfinite(rgb).all():
        raise ValueError("an HDR image must be finite (no NaN or inf)")
    h, w = rgb.shape[:2]
    header = b"%s\n%s\n\n-Y %d +X %d\n" % (MAGIC, FORMAT, h, w)
    return header + encode_rgbe(rgb).tobytes()


def write_hdr(path: Path, rgb: np.ndarray) -> None:
    """Write an (H, W, 3) linear float image as a Radiance .hdr, atomically (temp file + rename)."""
    atomic_write(Path(path), hdr_bytes(rgb), what="the environment map")


def read_hdr(path: Path) -> np.ndarray:
    """(H, W, 3) float32 linear radiance of a Radiance .hdr (flat or run-length scanlines, the
    standard "-Y H +X W" orientation). Raises ValueError naming what is wrong with the file."""
    data = Path(path).read_bytes()
    if not data.startswith(b"#?"):
        raise ValueError(f"{path}: not a Radiance .hdr file (no '#?' signature)")
    pos, fmt = 0, None
    while True:  # header lines up to the blank line
        end = data.find(b"\n", pos)
        if end < 0:
            raise ValueError(f"{path}: header does not end")
        line, pos = data[pos:end].strip(), end + 1
        if not line:
            break
        if line.startswith(b"FORMAT="):
            fmt = line
    if fmt not in (None, FORMAT):
        raise ValueError(f"{path}: unsupported {fmt.decode(errors='replace')} (only 32-bit_rle_rgbe)")
    end = data.find(b"\n", pos)
    size = data[pos:end if end >= 0 else len(data)].split()
    if len(size) != 4 or size[0] != b"-Y" or size[2] != b"+X":
        raise ValueError(f"{path}: unsupported resolution line {b' '.join(size)!r} "
                         "(only '-Y H +X W')")
    h, w = int(size[1]), int(size[3])
    pos = end + 1
    rows = np.empty((h, w, 4), dtype=np.uint8)
    for y in range(h):
        rows[y], pos = _scanline(data, pos, w, path)
    return decode_rgbe(rows)


def _scanline(data: bytes, pos: int, w: int, path: Path) -> tuple[np.ndarray, int]:
    head = data[pos:pos + 4]
    if len(head) < 4:
        raise ValueError(f"{path}: truncated pixel data")
    if not (8 <= w <= 0x7FFF and head[0] == 2 and head[1] == 2 and not head[2] & 0x80):
        flat = np.frombuffer(data, np.uint8, w * 4, pos) if len(data) >= pos + 4 * w else None
        if flat is None:
            raise ValueError(f"{path}: truncated pixel data")
        if (flat.reshape(w, 4)[:, :3] == 1).all(axis=1).any():
            raise ValueError(f"{path}: old-style run-length scanlines are not supported")
        return flat.reshape(w, 4), pos + 4 * w
    if (head[2] << 8) | head[3] != w:
        raise ValueError(f"{path}: run-length scanline width {(head[2] << 8) | head[3]} != {w}")
    pos += 4
    out = np.empty((4, w), dtype=np.uint8)
    for c in range(4):  # the four byte planes, each run-length coded on its own
        x = 0
        while x < w:
            if pos >= len(data):
                raise ValueError(f"{path}: truncated run-length data")
            count = data[pos]
            if count > 128:
                count -= 128
                if x + count > w or pos + 1 >= len(data):
                    raise ValueError(f"{path}: bad run-length data")
                out[c, x:x + count] = data[pos + 1]
                pos += 2
            else:
                if count == 0 or x + count > w or pos + 1 + count > len(data):
                    raise ValueError(f"{path}: bad run-length data")
                out[c, x:x + count] = np.frombuffer(data, np.uint8, count, pos + 1)
                pos += 1 + count
            x += count
    return out.T, pos
