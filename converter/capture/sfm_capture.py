"""A folder of photos without poses -> the same `Capture` the other loaders produce.

SfM (capture/sfm.py) poses the photos in `WORKDIR/sfm/`; here its model becomes frames: the
original photos (alpha and masks kept for training), the SfM camera of each (radial distortion is
removed when the pixels are read, capture/undistort.py), poses moved into a normalised frame
(capture/normalize.py) with +Z up and the object in [-1, 1]. Photos SfM could not pose are left
out (the summary says which and why). The held-out split follows the folder layout (`test/`) or,
as for the other loaders, every `test_every`-th posed photo by name.

Everything needed to rebuild the Capture is in the work folder (the model in `sfm/sparse/0`, the
summary), so `--resume` re-reads it instead of re-running SfM.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..errors import CaptureError
from .colmap import opengl_c2w, pinhole_of, read_model
from .similarity import apply_similarity
from .images import DistortedFrame, assign_test_split
from .model import Capture, Frame
from .normalize import normalise
from .photos import PhotoSet, find_photos, select_photos
from .sfm import SfmOptions, run_sfm


def load_photo_capture(folder: Path, *, workdir: Path | None, options: SfmOptions | None = None,
                       resume: bool = False, reporter=None, test_every: int = 8) -> Capture:
    """Pose the photos of `folder` with SfM in `workdir/sfm` and return the normalised Capture."""
    options = options or SfmOptions()
    if workdir is None:
        raise CaptureError(
            f"no camera poses found: {len(find_photos(folder))} photos, and posing them needs a work folder",
            path=str(folder), hint="nrconvert poses photos with pycolmap structure-from-motion in OUTPUT.work/sfm/; "
            "call load_capture(..., workdir=...) when using the library")
    photos = select_photos(folder, max_images=options.max_images, masks=options.masks)
    result = run_sfm(photos, Path(workdir) / "sfm", options, resume=resume, reporter=reporter)
    return capture_from_model(result.model_dir, photos, result.summary, test_every)


def capture_from_model(model_dir: Path, photos: PhotoSet, summary: dict, test_every: int) -> Capture:
    """Frames of the posed photos, normalised, split, with the SfM facts in `extras`."""
    model = read_model(model_dir)
    by_name = {p.name: p for p in photos.photos}
    frames, distortion = [], {}
    for im in sorted(model.images, key=lambda im: im.name):
        photo = by_name.get(im.name)
        if photo is None:
            raise CaptureError(f"the SfM model poses {im.name!r}, which is not among the photos",
                               path=str(model.images_file), hint="delete the work folder's sfm/ and run again")
        camera = model.cameras[im.camera_id]
        fx, fy, cx, cy, d = pinhole_of(camera, model.cameras_file)
        args = (photo.path, opengl_c2w(im.qvec, im.tvec), fx, fy, cx, cy, camera.width, camera.height)
        if d is None:
            frame = Frame(*args, split=photo.split or "train", mask_path=photo.mask_path)
        else:
            frame = DistortedFrame(*args, split=photo.split or "train", mask_path=photo.mask_path, distortion=d)
            distortion[str(photo.path)] = d.to_dict()
        frames.append(frame)
    norm = normalise(np.stack([f.c2w for f in frames]), model.points, str(model_dir))
    for frame in frames:
        frame.c2w = apply_similarity(norm.transform, frame.c2w)
    if not any(p.split for p in photos.photos):
        frames = assign_test_split(frames, test_every)
    elif not any(f.split == "train" for f in frames):
        frames = [dataclasses.replace(f, split="train") for f in frames]
    extras = {"sfm": _facts(summary, norm), "colmap_to_capture": norm.transform.tolist(),
              "colmap_model": str(model_dir)}
    if distortion:
        extras["distortion"] = distortion
    return Capture(frames=frames, source="images", root=photos.root, up_axis="z", bounds=norm.bounds,
                   extras=extras)


def _facts(summary: dict, norm) -> dict:
    """The SfM facts worth keeping with the capture (the full summary stays in summary.json)."""
    keep = ("images", "registered", "registered_share", "rejected_by_reason", "matcher", "cameras",
            "mean_reprojection_error_px", "points", "seconds")
    facts = {k: summary[k] for k in keep if k in summary}
    facts.update(up_from=norm.up_source, object_points=norm.object_points)
    return facts
