"""Finding, checking and reading the photos of a capture.

Loaders only *probe* images (header, plus a cheap truncation check) so that a broken capture fails
at load time with a message naming the file, while pixels are decoded later, one frame at a time,
by `load_frame_image`.

Lens distortion: `Frame` describes an ideal pinhole camera, and its `image_path` points at the
original photo. When that photo was shot through a distorting lens, the loader returns a
`DistortedFrame` (a `Frame` subclass that adds the `distortion` coefficients), and
`load_frame_image` resamples such a photo onto the frame's pinhole K automatically, so callers
never see distorted pixels. The loader also records the coefficients as plain dicts in
`Capture.extras["distortion"][str(frame.image_path)]`, so they survive JSON serialisation.
Pass the full-resolution frame (as loaded) and use `scaled_frame` for the intrinsics that match a
downscaled image.

Pixels are used as stored: EXIF orientation is *not* applied, because SfM tools (COLMAP) estimate
poses on the stored pixel grid too. Formats: what Pillow reads (PNG, JPEG, WebP, BMP, TIFF); TIFFs
are read with tifffile first, which keeps 16-bit and float samples (Pillow reduces those to 8 bits
or refuses them); OpenEXR is read through pycolmap's OpenImageIO, which converts linear values to
8-bit sRGB (values above 1 clip, alpha is dropped): Pillow has no EXR decoder and the training
works on sRGB values in [0, 1] anyway. Pillow reduces 16-bit RGB(A) PNGs to 8 bits per channel;
16-bit grayscale keeps its precision.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import CaptureError
from .model import Capture, Frame
from .undistort import Distortion, undistort_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".exr")
TIFF_SUFFIXES = (".tif", ".tiff")


@dataclass
class DistortedFrame(Frame):
    """A Frame whose photo still carries lens distortion, removed by `load_frame_image`.

    The intrinsics (fx, fy, cx, cy) are those of the pinhole camera the photo is resampled onto,
    so every stage other than image reading can treat it as a plain `Frame`.
    """

    distortion: Distortion | None = None


def is_image_file(path: Path) -> bool:
    """Whether the name looks like a photo we can read (by extension, case-insensitive)."""
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def resolve_inside(root: Path, relative: str, *, source: Path, field: str) -> Path:
    """Join a path read from a capture file to `root`, refusing anything that leaves `root`.

    The check is lexical (no symlink resolution): a capture may legitimately symlink its image
    folder elsewhere, but a file must not reach outside its folder with `..` or absolute paths.
    """
    if not isinstance(relative, str) or not relative.strip():
        raise CaptureError(f"{field}: expected a non-empty relative path string", path=str(source))
    if os.path.isabs(relative) or Path(relative).is_absolute():
        raise CaptureError(
            f"{field}: absolute path {relative!r} is not allowed",
            path=str(source),
            hint="write paths relative to the folder that holds the capture file",
        )
    base = os.path.normpath(os.path.abspath(root))
    joined = os.path.normpath(os.path.join(base, relative))
    if os.path.commonpath([base, joined]) != base:
        raise CaptureError(
            f"{field}: path {relative!r} points outside the capture folder {base}",
            path=str(source),
            hint="keep images and masks inside the capture folder (no '../')",
        )
    return Path(joined)


def find_image_file(path: Path) -> Path | None:
    """The file itself, or the file with an image extension appended (NeRF-synthetic `r_0`)."""
    if path.is_file():
        return path
    for suffix in IMAGE_SUFFIXES + tuple(s.upper() for s in IMAGE_SUFFIXES):
        candidate = path.with_name(path.name + suffix)
        if candidate.is_file():
            return candidate
    return None


def probe_image(path: Path, ref: str) -> tuple[int, int]:
    """(width, height) from the header, after checking that the file decodes to its end.

    PNGs are verified chunk by chunk (CRC, no inflate), JPEGs are decoded at 1/8 scale (DCT
    scaling, a few ms) so truncated downloads are caught now and not halfway through training.
    `ref` says where the path came from, e.g. "transforms.json frames[3].file_path".
    EXR and float TIFFs (no Pillow decoder) are decoded in full by their own readers.
    """
    if path.suffix.lower() == ".exr" or (path.suffix.lower() in TIFF_SUFFIXES and not _pillow_opens(path)):
        try:
            pixels = _read_special(path)
        except _DecodeError as exc:
            raise CaptureError(f"unreadable or truncated image (referenced by {ref}): {exc}", path=str(path),
                               hint="re-export or re-download the image, or remove the frame") from exc
        return int(pixels.shape[1]), int(pixels.shape[0])
    try:
        with Image.open(path) as img:
            size = img.size
            fmt = img.format
            if fmt == "JPEG":
                img.draft(None, (max(1, size[0] // 8), max(1, size[1] // 8)))
                img.load()
            elif fmt == "PNG":
                img.verify()
            else:
                img.load()
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise CaptureError(
            f"unreadable or truncated image (referenced by {ref}): {exc}",
            path=str(path),
            hint="re-export or re-download the image, or remove the frame",
        ) from exc
    return int(size[0]), int(size[1])


def assign_test_split(frames: list[Frame], test_every: int) -> list[Frame]:
    """Sort by file name and hold out every `test_every`-th frame (0, n, 2n, ...) as "test".

    This is the LLFF convention used when a capture has no explicit split. `test_every=0` keeps
    every frame for training, and a single frame is always kept for training.
    """
    if test_every < 0 or test_every == 1:
        raise ValueError(f"test_every must be 0 (no test split) or >= 2, got {test_every}")
    ordered = sorted(frames, key=lambda f: f.image_path.as_posix())
    if test_every == 0 or len(ordered) < 2:
        return [dataclasses.replace(f, split="train") for f in ordered]
    return [
        dataclasses.replace(f, split="test" if i % test_every == 0 else "train")
        for i, f in enumerate(ordered)
    ]


def frame_distortion(frame: Frame, capture: Capture | None = None) -> Distortion | None:
    """The lens distortion of this frame's photo, or None.

    Read from a `DistortedFrame`, else from `capture.extras["distortion"]` (for frames rebuilt
    from a serialised capture).
    """
    own = getattr(frame, "distortion", None)
    if own is not None or capture is None:
        return own
    values = (capture.extras.get("distortion") or {}).get(str(frame.image_path))
    return Distortion.from_dict(values) if values else None


def scaled_frame(frame: Frame, downscale: int) -> Frame:
    """The frame's camera for an image shrunk by an integer factor (as `load_frame_image` does).

    With the corner-origin pixel convention every pixel coordinate simply divides by the factor;
    the bottom/right remainder rows/columns that do not fill a block are cropped, which leaves
    the principal point where it was.
    """
    _check_factor(downscale)
    return dataclasses.replace(
        frame,
        fx=frame.fx / downscale,
        fy=frame.fy / downscale,
        cx=frame.cx / downscale,
        cy=frame.cy / downscale,
        width=frame.width // downscale,
        height=frame.height // downscale,
    )


def load_frame_image(
    frame: Frame,
    downscale: int = 1,
    *,
    distortion: Distortion | Mapping[str, float] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """RGB (HxWx3 float32, sRGB values in [0, 1]) and alpha (HxW float32) or None.

    Alpha comes from an RGBA/LA image, from `frame.mask_path`, or their product when both exist.
    A distorted photo (a `DistortedFrame`, or an explicit `distortion`, which wins; pass
    `Distortion()` to get the raw pixels) is first resampled onto the frame's pinhole K; with
    `downscale > 1` it is then area-averaged (see `scaled_frame` for the matching camera).
    """
    _check_factor(downscale)
    rgb, alpha = _read_rgba(frame.image_path)
    _check_size(frame.image_path, rgb.shape, frame)
    if frame.mask_path is not None:
        mask = _read_mask(frame.mask_path)
        _check_size(frame.mask_path, mask.shape, frame)
        alpha = mask if alpha is None else alpha * mask
    d = Distortion.from_dict(distortion) if isinstance(distortion, Mapping) else distortion
    d = frame_distortion(frame) if d is None else d
    if d is not None and not d.is_identity():
        K = frame.intrinsics()
        rgb = np.clip(undistort_image(rgb, K, d), 0.0, 1.0)
        alpha = None if alpha is None else np.clip(undistort_image(alpha, K, d), 0.0, 1.0)
    if downscale > 1:
        rgb, alpha = downscale_area(rgb, alpha, downscale)
    return rgb, alpha


def downscale_area(
    rgb: np.ndarray, alpha: np.ndarray | None, factor: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Average `factor`x`factor` blocks; with alpha, colours are averaged premultiplied.

    Premultiplying makes the small image composite over any background exactly like the average
    of the big one, so transparent pixels' (arbitrary) colours do not bleed into object edges.
    """
    if alpha is None:
        return _block_mean(rgb, factor), None
    a = _block_mean(alpha, factor)
    premult = _block_mean(rgb * alpha[..., None], factor)
    plain = _block_mean(rgb, factor)
    safe = np.maximum(a, 1e-8)[..., None]
    out = np.where(a[..., None] > 1e-6, premult / safe, plain)
    return np.clip(out, 0.0, 1.0).astype(np.float32), a


def _block_mean(array: np.ndarray, factor: int) -> np.ndarray:
    """Mean over non-overlapping blocks, cropping the bottom/right remainder."""
    h, w = array.shape[0] // factor, array.shape[1] // factor
    if h == 0 or w == 0:
        raise ValueError(f"downscale {factor} leaves no pixels of a {array.shape[1]}x{array.shape[0]} image")
    cropped = array[: h * factor, : w * factor]
    blocks = cropped.reshape(h, factor, w, factor, *array.shape[2:])
    return blocks.mean(axis=(1, 3), dtype=np.float64).astype(np.float32)


def _check_factor(downscale: int) -> None:
    if not isinstance(downscale, int) or downscale < 1:
        raise ValueError(f"downscale must be a positive integer, got {downscale!r}")


def _check_size(path: Path, shape: tuple[int, ...], frame: Frame) -> None:
    """The pixels must match the camera, or every ray of this frame would be wrong."""
    height, width = shape[:2]
    if (width, height) != (frame.width, frame.height):
        raise CaptureError(
            f"image is {width}x{height} but its camera says {frame.width}x{frame.height}",
            path=str(path),
            hint="pass the full-resolution frame and use the downscale argument",
        )


def _open_decoded(path: Path) -> Image.Image:
    """Open and fully decode, turning every decoder failure into a CaptureError naming the file."""
    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except FileNotFoundError as exc:
        raise CaptureError("image file not found", path=str(path)) from exc
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise CaptureError(f"unreadable or truncated image: {exc}", path=str(path)) from exc


def _to_float(array: np.ndarray) -> np.ndarray:
    """Integer pixels to [0, 1] by their bit depth; float pixels are clipped."""
    if array.dtype == np.uint8 or array.dtype == np.bool_:
        return array.astype(np.float32) / (1.0 if array.dtype == np.bool_ else 255.0)
    if array.dtype.kind in "ui":
        return np.clip(array.astype(np.float32) / 65535.0, 0.0, 1.0)
    return np.clip(np.nan_to_num(array.astype(np.float32)), 0.0, 1.0)


def _normalise_mode(img: Image.Image) -> Image.Image:
    """Bring exotic Pillow modes to L, LA, RGB, RGBA or a 16-bit/float single channel."""
    if img.mode in ("L", "LA", "RGB", "RGBA", "F") or img.mode.startswith("I"):
        return img
    if img.mode == "P":
        return img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("PA", "RGBa", "RGBX"):
        return img.convert("RGBA" if img.mode != "RGBX" else "RGB")
    if img.mode in ("La", "1"):
        return img.convert("LA" if img.mode == "La" else "L")
    return img.convert("RGB")


def read_pixels(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """The photo's RGB (HxWx3 float32 in [0, 1]) and alpha (HxW) or None, with no camera checks.

    For callers that need the pixels before any camera exists (feature extraction for SfM).
    """
    return _read_rgba(Path(path))


def read_mask(path: Path) -> np.ndarray:
    """A mask file as HxW float in [0, 1] (colour masks are reduced to luminance)."""
    return _read_mask(Path(path))


def _pillow_opens(path: Path) -> bool:
    try:
        with Image.open(path):
            return True
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False


class _DecodeError(Exception):
    """A special-format reader failed; callers turn it into a CaptureError with their context."""


def _read_special(path: Path) -> np.ndarray:
    """EXR (8-bit sRGB via pycolmap's OpenImageIO) or TIFF (tifffile, full bit depth) samples."""
    if not path.is_file():
        raise _DecodeError("image file not found")
    if path.suffix.lower() == ".exr":
        import pycolmap

        bitmap = pycolmap.Bitmap.read(str(path), True)
        if bitmap is None:
            raise _DecodeError("OpenImageIO cannot decode this EXR")
        return np.ascontiguousarray(bitmap.to_array())
    import tifffile

    try:
        pixels = tifffile.imread(path)
    except Exception as exc:  # tifffile raises many types (TiffFileError, ValueError, struct.error, ...)
        raise _DecodeError(str(exc) or type(exc).__name__) from exc
    if pixels.ndim == 3 and pixels.shape[0] in (3, 4) and pixels.shape[2] not in (3, 4):
        pixels = np.moveaxis(pixels, 0, -1)  # planar (samples first) layout
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] not in (1, 2, 3, 4)):
        raise _DecodeError(f"unsupported TIFF layout {pixels.shape} (expected one image, 1-4 channels)")
    return pixels[..., 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels


def _decode(path: Path) -> np.ndarray:
    """Samples as stored (uint8/uint16/float), HxW or HxWxC, by the best reader for the format."""
    suffix = path.suffix.lower()
    if suffix == ".exr" or (suffix in TIFF_SUFFIXES and not _pillow_opens(path)):
        try:
            return _read_special(path)
        except _DecodeError as exc:
            raise CaptureError(f"unreadable or truncated image: {exc}", path=str(path)) from exc
    if suffix in TIFF_SUFFIXES:
        try:
            return _read_special(path)  # keeps 16-bit samples Pillow would reduce to 8 bits
        except _DecodeError:
            pass  # e.g. a JPEG-compressed TIFF tifffile cannot decode without imagecodecs: Pillow can
    return np.asarray(_normalise_mode(_open_decoded(path)))


def _read_rgba(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode any 8/16-bit or float grayscale/RGB(A) image into float RGB and optional alpha."""
    pixels = _to_float(_decode(path))
    if pixels.ndim == 2:
        return np.repeat(pixels[..., None], 3, axis=2), None
    channels = pixels.shape[2]
    if channels == 2:
        return np.repeat(pixels[..., :1], 3, axis=2), np.ascontiguousarray(pixels[..., 1])
    if channels == 4:
        return np.ascontiguousarray(pixels[..., :3]), np.ascontiguousarray(pixels[..., 3])
    return np.ascontiguousarray(pixels[..., :3]), None


def _read_mask(path: Path) -> np.ndarray:
    """A mask file as HxW float in [0, 1] (colour masks are reduced to luminance)."""
    img = _open_decoded(path)
    if not (img.mode in ("L", "F", "1") or img.mode.startswith("I")):
        img = img.convert("L")
    return _to_float(np.asarray(img))
