"""One entry point that recognises what kind of capture a path holds.

Users point the CLI at whatever they have (a `transforms.json`, a dataset folder, a COLMAP
workspace, a folder of photos); guessing the kind here keeps that knowledge out of the CLI and
gives one place for the "what did you mean?" errors.

Recognised, in this order:
  * a `.json` file                          -> transforms loader
  * a folder with `transforms_train.json` or `transforms.json` -> transforms loader
  * a COLMAP model (`cameras`/`images` .bin or .txt) in the folder itself, `sparse/0`, `sparse`
    or `colmap/sparse/0`, or one of those files   -> COLMAP loader (photos in `images/`)
  * a folder of photos without poses        -> CaptureError (SfM from photos is a later feature)
"""
from __future__ import annotations

from pathlib import Path

from ..errors import CaptureError
from .colmap import find_model_dir, load_colmap
from .images import is_image_file
from .model import Capture
from .transforms import load_transforms, transforms_files

COLMAP_FILES = {f"{n}{e}" for n in ("cameras", "images", "points3D") for e in (".bin", ".txt")}
SUPPORTED = "a transforms.json file, a folder with transforms.json, or a COLMAP model with images/"


def load_capture(path: Path, *, test_every: int = 8) -> Capture:
    """Load a capture of any supported kind.

    Without an explicit test split, every `test_every`-th frame (sorted by file name) is held out
    as "test" (LLFF convention); `test_every=0` keeps every frame for training.
    """
    if test_every < 0 or test_every == 1:
        raise ValueError(f"test_every must be 0 (no test split) or >= 2, got {test_every}")
    path = Path(path)
    if not path.exists():
        raise CaptureError("capture not found (no such file or folder)", path=str(path))
    if path.is_file():
        return _load_file(path, test_every)
    if transforms_files(path):
        return load_transforms(path, test_every=test_every)
    if find_model_dir(path) is not None:
        return load_colmap(path, test_every=test_every)
    photos = _count_photos(path)
    if photos:
        raise CaptureError(
            f"no camera poses found: {photos} photos but no transforms.json or COLMAP model",
            path=str(path),
            hint="poses from photos alone need structure-from-motion with pycolmap, which nrconvert "
            "does not run yet; run COLMAP (or nerfstudio's ns-process-data) first and point "
            "nrconvert at the resulting sparse/0 model or transforms.json",
        )
    raise CaptureError("no capture found in this folder", path=str(path), hint=f"expected {SUPPORTED}")


def _load_file(path: Path, test_every: int) -> Capture:
    """A capture named by one of its files."""
    if path.suffix.lower() == ".json":
        return load_transforms(path, test_every=test_every)
    if path.name in COLMAP_FILES:
        return load_colmap(path.parent, test_every=test_every)
    raise CaptureError("not a capture file", path=str(path), hint=f"expected {SUPPORTED}")


def _count_photos(folder: Path) -> int:
    """Photos directly in the folder or in its `images/` subfolder."""
    count = 0
    for where in (folder, folder / "images"):
        if where.is_dir():
            count += sum(1 for p in where.iterdir() if is_image_file(p))
    return count
