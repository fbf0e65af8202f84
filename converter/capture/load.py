"""One entry point that recognises what kind of capture a path holds.

Users point the CLI at whatever they have (a `transforms.json`, a dataset folder, a COLMAP
workspace, a folder of photos); guessing the kind here keeps that knowledge out of the CLI and
gives one place for the "what did you mean?" errors.

Recognised, in this order:
  * a `.json` file                          -> transforms loader
  * a folder with `transforms_train.json` or `transforms.json` -> transforms loader
  * a COLMAP model (`cameras`/`images` .bin or .txt) in the folder itself, `sparse/0`, `sparse`
    or `colmap/sparse/0`, or one of those files   -> COLMAP loader (photos in `images/`)
  * a folder of photos without poses (directly, in `images/`, or in `train/` + `test/`)
                                            -> structure-from-motion with pycolmap (capture/sfm.py)
                                               in `workdir/sfm/`
"""
from __future__ import annotations

from pathlib import Path

from ..errors import CaptureError, UsageError
from .colmap import find_model_dir, load_colmap
from .model import Capture
from .photos import find_photos
from .sfm import SfmOptions
from .transforms import load_transforms, transforms_files

COLMAP_FILES = {f"{n}{e}" for n in ("cameras", "images", "points3D") for e in (".bin", ".txt")}
SUPPORTED = ("a transforms.json file, a folder with transforms.json, a COLMAP model with images/, "
             "or a folder of photos (in it, in images/, or in train/ + test/)")


def load_capture(path: Path, *, test_every: int = 8, workdir: Path | None = None,
                 sfm: SfmOptions | None = None, resume: bool = False, reporter=None) -> Capture:
    """Load a capture of any supported kind.

    Without an explicit test split, every `test_every`-th frame (sorted by file name) is held out
    as "test" (LLFF convention); `test_every=0` keeps every frame for training. Photos without
    poses are posed by SfM in `workdir/sfm/` (with `sfm` options; reused there when `resume`).
    """
    if test_every < 0 or test_every == 1:
        raise ValueError(f"test_every must be 0 (no test split) or >= 2, got {test_every}")
    path = Path(path)
    if not path.exists():
        raise CaptureError("capture not found (no such file or folder)", path=str(path))
    posed = path.is_file() or bool(transforms_files(path)) or find_model_dir(path) is not None
    if posed and sfm is not None and (sfm.masks is not None or sfm.max_images is not None):
        raise UsageError("--masks and --max-images apply to photo folders without poses; this capture has "
                         "poses (give masks with mask_path in transforms.json)")
    if path.is_file():
        return _load_file(path, test_every)
    if transforms_files(path):
        return load_transforms(path, test_every=test_every)
    if find_model_dir(path) is not None:
        return load_colmap(path, test_every=test_every)
    if find_photos(path):
        from .sfm_capture import load_photo_capture

        return load_photo_capture(path, workdir=workdir, options=sfm, resume=resume, reporter=reporter,
                                  test_every=test_every)
    raise CaptureError("no capture found in this folder", path=str(path), hint=f"expected {SUPPORTED}")


def _load_file(path: Path, test_every: int) -> Capture:
    """A capture named by one of its files."""
    if path.suffix.lower() == ".json":
        return load_transforms(path, test_every=test_every)
    if path.name in COLMAP_FILES:
        return load_colmap(path.parent, test_every=test_every)
    raise CaptureError("not a capture file", path=str(path), hint=f"expected {SUPPORTED}")

