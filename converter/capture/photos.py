"""The photos of a capture that has no poses: where they are, which are held out, their masks.

Layouts, in this order:
  * `images/` inside the folder (COLMAP's workspace layout);
  * `train/` (and `test/`) inside the folder (NeRF-synthetic layout): every photo goes through
    SfM, and the `test/` ones are then held out of training for the report's quality numbers;
    other subfolders (`val/`, `test_relight/`) are ignored;
  * photos directly in the folder.
Names are relative to the folder and use '/', exactly as they are stored in the SfM database.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CaptureError, UsageError
from .images import IMAGE_SUFFIXES, is_image_file

SPLIT_FOLDERS = ("train", "test")


@dataclass(frozen=True)
class Photo:
    path: Path  # absolute
    name: str  # relative to the capture folder, '/'-separated
    split: str | None = None  # "train" / "test" from the folder layout, else None (every n-th held out)
    mask_path: Path | None = None  # user mask (white = object), also used for training


@dataclass
class PhotoSet:
    root: Path  # the capture folder: names are relative to it
    photos: list[Photo]  # the photos SfM will see, sorted by name
    left_out: list[str]  # names dropped by --max-images


def find_photos(folder: Path) -> list[Photo]:
    """The photos of a folder in one of the supported layouts, sorted by name (empty if none)."""
    root = Path(folder).absolute()
    if _images_in(root / "images"):
        return [Photo(p, _name(root, p)) for p in _images_in(root / "images")]
    if _images_in(root / "train"):
        return [Photo(p, _name(root, p), split) for split in SPLIT_FOLDERS for p in _images_in(root / split)]
    return [Photo(p, _name(root, p)) for p in _images_in(root)]


def select_photos(folder: Path, *, max_images: int | None = None, masks: Path | None = None) -> PhotoSet:
    """The photos SfM should use: all of them, or `max_images` evenly spread over the name order."""
    root = Path(folder).absolute()
    photos = sorted(find_photos(root), key=lambda p: p.name)
    if max_images is not None and max_images < 3:
        raise UsageError(f"--max-images must be at least 3, got {max_images}")
    left_out: list[str] = []
    if max_images is not None and len(photos) > max_images:
        keep = set(np.round(np.linspace(0, len(photos) - 1, max_images)).astype(int).tolist())
        left_out = [p.name for i, p in enumerate(photos) if i not in keep]
        photos = [p for i, p in enumerate(photos) if i in keep]
    if masks is not None:
        photos = [dataclasses.replace(p, mask_path=find_mask(Path(masks), p)) for p in photos]
    return PhotoSet(root, photos, left_out)


def find_mask(masks: Path, photo: Photo) -> Path:
    """The mask of a photo: `NAME.png` (COLMAP's convention, `a.jpg` -> `a.jpg.png`), the same
    name, or the same stem with any image extension; looked up by the relative name, then by the
    file name alone."""
    if not masks.is_dir():
        raise CaptureError("masks folder not found", path=str(masks),
                           hint="--masks must name a folder with one mask image per photo")
    relative = Path(photo.name)
    for rel in dict.fromkeys([relative, Path(relative.name)]):
        candidates = [masks / f"{rel}.png", masks / rel]
        candidates += [(masks / rel).with_suffix(s) for s in IMAGE_SUFFIXES]
        for candidate in candidates:
            if candidate.is_file():
                return candidate.absolute()
    raise CaptureError(
        f"no mask for photo {photo.name!r}", path=str(masks),
        hint=f"name it {relative}.png (COLMAP's convention) or {relative.stem}.png; white = object, black = background",
    )


def _images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p.absolute() for p in folder.iterdir() if is_image_file(p))


def _name(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()
