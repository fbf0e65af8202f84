"""Structure-from-motion with pycolmap for a folder of photos without poses.

Steps, in `WORKDIR/sfm/` (each step is recorded in `state.json`, so `--resume` after a stop skips
what is finished, and a finished SfM is not redone):
  1. database: one COLMAP camera per group of photos sharing size, EXIF focal length and camera
     body (the EXIF focal length is the camera's prior), the photos imported into it;
  2. features: SIFT per photo (capture/features.py: alpha/masks, small photos upsampled, colour
     channels for weak texture), written to the database;
  3. matching: every pair for up to `exhaustive_limit` photos, else each photo with its
     neighbours in name order (sequential: a video or a walk around the object);
  4. mapping: COLMAP's incremental mapper; when it poses fewer than `RELAXED_BELOW` of the
     photos, once more with lower minimum match counts (few-feature photos). The largest model
     wins and is written to `sparse/0` (binary COLMAP model, raw SfM frame).
Pixel thresholds (RANSAC, reprojection filters) are COLMAP's, which assume the keypoint noise of
a photo of a few megapixels; they are scaled by the photos' extraction scale, so an upsampled
200 px photo is held to the same accuracy in its extraction pixels as a large one.

`summary.json` says which photos were posed and why the others were not; fewer than half posed
raises SfmError (exit 10).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..checkpoint import write_json
from ..errors import CaptureError, SfmError, os_error
from .exif import read_exif_camera
from .features import FeatureExtractor, extraction_scale
from .images import probe_image
from .photos import PhotoSet
from .sfm_summary import check_registered, reason_counts, rejection, summary_lines

MIN_PHOTOS = 3
STATE_VERSION = 1
MIN_VERIFIED_INLIERS = 15  # COLMAP's default: with fewer, random pairs of small photos verify by chance
RELAXED_BELOW = 0.9
MAPPER_LIMITS = (  # COLMAP's defaults, then relaxed for photos with few features
    {"min_num_matches": 15, "init_min_num_inliers": 100, "abs_pose_min_num_inliers": 30},
    {"min_num_matches": 15, "init_min_num_inliers": 50, "abs_pose_min_num_inliers": 20},
)


@dataclass
class SfmOptions:
    """How to run SfM (CLI: --masks, --max-images, --sfm-max-size, --sfm-matcher)."""

    masks: Path | None = None
    max_images: int | None = None
    max_size: int = 2000  # long side of the images SIFT sees (larger photos are shrunk for it)
    matcher: str = "auto"  # auto | exhaustive | sequential
    exhaustive_limit: int = 150
    sequential_overlap: int = 20
    camera_model: str = "SIMPLE_RADIAL"
    colour_features: bool = True  # opponent-colour SIFT on weak-texture photos (capture/features.py)
    seed: int = 0


@dataclass
class SfmResult:
    model_dir: Path  # binary COLMAP model of the posed photos, raw SfM frame
    summary: dict


def run_sfm(photos: PhotoSet, folder: Path, options: SfmOptions, *, resume: bool = False,
            reporter=None) -> SfmResult:
    """Pose `photos` (or reuse a finished run in `folder` when resuming with the same inputs)."""
    n = len(photos.photos)
    if n < MIN_PHOTOS:
        raise CaptureError(f"only {n} photo(s) without poses: structure-from-motion needs at least {MIN_PHOTOS}",
                           path=str(photos.root), hint="add photos of the object from different positions")
    if options.matcher not in ("auto", "exhaustive", "sequential"):
        raise ValueError(f"unknown matcher {options.matcher!r}")
    state = _open_folder(folder, _fingerprint(photos, options), resume)
    done = set(state["done"])
    summary_path = folder / "summary.json"
    if "model" in done and summary_path.exists() and (folder / "sparse" / "0").is_dir():
        summary = json.loads(summary_path.read_text())
        check_registered(summary, photos.root, summary_path)
        return SfmResult(folder / "sparse" / "0", summary)
    started = time.time()
    db = folder / "database.db"
    with _quiet_colmap():
        _step(state, folder, "database", lambda: _build_database(db, photos, options))
        scale = _step(state, folder, "features", lambda: _extract(db, photos, options, reporter))
        _say(reporter, n, "matching")
        matcher = _step(state, folder, "matches", lambda: _match(db, n, options, 1.0 / scale))
        _say(reporter, n, "mapping")
        mapping_started = time.time()
        model, summary = _map(db, folder, photos, options, 1.0 / scale)
    summary["matcher"] = matcher
    summary["seconds"] = round(time.time() - started, 1)
    summary["seconds_by_step"] = {**state.get("seconds", {}), "mapping": round(time.time() - mapping_started, 1)}
    summary["extraction_scale"] = round(scale, 3)
    if model is not None:
        model.write(_fresh(folder / "sparse" / "0"))
    write_json(summary_path, summary)
    state["done"].append("model")
    write_json(folder / "state.json", state)
    if reporter is not None:
        reporter.end("sfm", **{k: summary[k] for k in ("images", "registered", "matcher")},
                     rejected=reason_counts(summary["rejected"]), lines=summary_lines(summary))
    check_registered(summary, photos.root, summary_path)
    return SfmResult(folder / "sparse" / "0", summary)


def _fingerprint(photos: PhotoSet, options: SfmOptions) -> str:
    """Changes when a photo, a mask or an option that shapes the result changes."""
    items = []
    for p in photos.photos:
        for path in (p.path, p.mask_path):
            if path is not None:
                st = path.stat()
                items.append([p.name, str(path), st.st_size, st.st_mtime_ns])
    opts = {k: v for k, v in asdict(options).items() if k != "masks"}
    blob = json.dumps([STATE_VERSION, items, opts], default=str, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _open_folder(folder: Path, fingerprint: str, resume: bool) -> dict:
    """The state to continue from, or a fresh folder (not resuming, or other inputs)."""
    state_path = folder / "state.json"
    if resume and state_path.exists():
        try:
            state = json.loads(state_path.read_text())
            if state.get("fingerprint") == fingerprint and state.get("version") == STATE_VERSION:
                return state
        except (OSError, ValueError):
            pass
    _fresh(folder)
    state = {"version": STATE_VERSION, "fingerprint": fingerprint, "done": []}
    write_json(state_path, state)
    return state


def _fresh(path: Path) -> Path:
    try:
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
    except OSError as exc:
        raise os_error(exc, str(path), "the SfM work folder") from exc
    return path


def _step(state: dict, folder: Path, name: str, fn):
    """Run `fn` unless the state says it finished; its (JSON) result is kept in the state."""
    if name in state["done"]:
        return state.get("results", {}).get(name)
    started = time.time()
    result = fn()
    state["done"].append(name)
    state.setdefault("results", {})[name] = result
    state.setdefault("seconds", {})[name] = round(time.time() - started, 1)
    write_json(folder / "state.json", state)
    return result


@contextmanager
def _quiet_colmap():
    """COLMAP logs every step at INFO to stderr; keep only its errors while we run it."""
    import pycolmap

    level = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 2
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = level


def _build_database(db: Path, photos: PhotoSet, options: SfmOptions) -> None:
    """Cameras grouped by (size, EXIF focal, body), photos imported with their group's camera."""
    import pycolmap

    groups: dict[tuple, list[str]] = {}
    for p in photos.photos:
        width, height = probe_image(p.path, "the photo folder")
        exif = read_exif_camera(p.path, width, height)
        focal = round(exif.focal_px, 1) if exif.focal_px else None
        groups.setdefault((width, height, focal, exif.body), []).append(p.name)
    db.unlink(missing_ok=True)
    for (width, height, focal, _), names in groups.items():
        camera = pycolmap.Camera.create_from_model_name(0, options.camera_model, focal or 1.2 * max(width, height),
                                                        width, height)
        camera.has_prior_focal_length = focal is not None
        with pycolmap.Database.open(db) as database:
            camera_id = database.write_camera(camera)
        reader = pycolmap.ImageReaderOptions()
        reader.existing_camera_id = camera_id
        try:
            pycolmap.import_images(db, photos.root, image_names=names, options=reader)
        except Exception as exc:  # COLMAP raises ValueError/RuntimeError with its own text
            raise CaptureError(f"COLMAP could not import the photos: {exc}", path=str(photos.root)) from exc


def _extract(db: Path, photos: PhotoSet, options: SfmOptions, reporter) -> float:
    """Features of every photo that has none yet; returns the median extraction scale."""
    import pycolmap

    extractor = FeatureExtractor(options.max_size, colour=options.colour_features)
    by_name = {p.name: p for p in photos.photos}
    scales = []
    with pycolmap.Database.open(db) as database:
        images = sorted(database.read_all_images(), key=lambda im: im.name)
        if reporter is not None:
            reporter.start("sfm", len(images))
        for i, image in enumerate(images):
            camera = database.read_camera(image.camera_id)
            scales.append(extraction_scale(camera.width, camera.height, options.max_size))
            if not database.exists_keypoints(image.image_id):
                features = extractor.extract(by_name[image.name])
                database.write_keypoints(image.image_id, features.keypoints)
                database.write_descriptors(image.image_id, pycolmap.FeatureDescriptors(
                    pycolmap.FeatureExtractorType.SIFT, features.descriptors))
            if reporter is not None:
                reporter.update("sfm", i + 1, len(images), step="features")
    return float(np.median(scales))


def _say(reporter, n: int, step: str) -> None:
    """Matching and mapping report no fraction of their own: the bar stays full, the step changes."""
    if reporter is not None:
        reporter.update("sfm", n, n, step=step)


def _match(db: Path, n: int, options: SfmOptions, threshold_scale: float) -> str:
    import pycolmap

    matcher = options.matcher
    if matcher == "auto":
        matcher = "exhaustive" if n <= options.exhaustive_limit else "sequential"
    matching = pycolmap.FeatureMatchingOptions()
    verification = pycolmap.TwoViewGeometryOptions()
    verification.min_num_inliers = MIN_VERIFIED_INLIERS
    verification.ransac.max_error *= threshold_scale
    verification.ransac.random_seed = options.seed
    if matcher == "exhaustive":
        pycolmap.match_exhaustive(db, matching_options=matching, verification_options=verification,
                                  device=pycolmap.Device.cpu)
    else:
        pairing = pycolmap.SequentialPairingOptions()
        pairing.overlap = options.sequential_overlap
        pairing.quadratic_overlap = True
        pycolmap.match_sequential(db, matching_options=matching, pairing_options=pairing,
                                  verification_options=verification, device=pycolmap.Device.cpu)
    return matcher


def _map(db: Path, folder: Path, photos: PhotoSet, options: SfmOptions, threshold_scale: float):
    """The largest model over the mapper attempts, and the summary of what it posed."""
    import pycolmap

    best, attempts, models = None, [], {}
    for i, limits in enumerate(MAPPER_LIMITS):
        pycolmap.set_random_seed(options.seed)
        out = _fresh(folder / "mapping" / str(i))
        try:
            models = pycolmap.incremental_mapping(db, photos.root, out, _mapper_options(limits, threshold_scale,
                                                                                      options.seed))
        except Exception as exc:  # COLMAP raises ValueError/RuntimeError with its own text
            raise SfmError(f"COLMAP's mapper failed: {exc}", path=str(photos.root)) from exc
        largest = max(models.values(), key=lambda r: r.num_reg_images(), default=None)
        attempts.append({"limits": limits, "registered": largest.num_reg_images() if largest else 0})
        if largest is not None and (best is None or largest.num_reg_images() > best[0].num_reg_images()):
            best = (largest, models)
        if best is not None and best[0].num_reg_images() >= RELAXED_BELOW * len(photos.photos):
            break
    shutil.rmtree(folder / "mapping", ignore_errors=True)
    model, models = best if best is not None else (None, {})
    return model, _summary(db, photos, model, models, options, attempts)


def _mapper_options(limits: dict, threshold_scale: float, seed: int):
    import pycolmap

    opts = pycolmap.IncrementalPipelineOptions()
    opts.min_num_matches = limits["min_num_matches"]
    opts.extract_colors = False  # our own reader does colours; COLMAP's would decode every photo again
    opts.random_seed = seed
    mapper, tri = opts.mapper, opts.triangulation
    mapper.init_min_num_inliers = limits["init_min_num_inliers"]
    mapper.abs_pose_min_num_inliers = limits["abs_pose_min_num_inliers"]
    for obj, name in ((mapper, "init_max_error"), (mapper, "abs_pose_max_error"), (mapper, "filter_max_reproj_error"),
                      (tri, "merge_max_reproj_error"), (tri, "complete_max_reproj_error")):
        setattr(obj, name, getattr(obj, name) * threshold_scale)
    return opts


def _summary(db: Path, photos: PhotoSet, model, models: dict, options: SfmOptions, attempts: list) -> dict:
    import pycolmap

    posed = {im.name for im in model.images.values() if im.has_pose} if model is not None else set()
    elsewhere = {im.name: m.num_reg_images() for m in models.values() if m is not model
                 for im in m.images.values() if im.has_pose}
    with pycolmap.Database.open(db) as database:
        images = database.read_all_images()
        keypoints = {im.name: database.num_keypoints_for_image(im.image_id) for im in images}
        pair_ids, inliers = database.read_two_view_geometry_num_inliers()
    matched_ids = set()
    for pair_id, count in zip(pair_ids, inliers):
        if count >= MIN_VERIFIED_INLIERS:
            matched_ids.update(pycolmap.pair_id_to_image_pair(pair_id))
    matched = {im.name for im in images if im.image_id in matched_ids}
    rejected = [rejection(p.name, keypoints.get(p.name, 0), p.name in matched, elsewhere.get(p.name))
                for p in photos.photos if p.name not in posed]
    cameras = [] if model is None else [
        {"id": c.camera_id, "model": c.model_name, "width": c.width, "height": c.height,
         "params": [round(float(v), 4) for v in c.params], "exif_focal_prior": bool(c.has_prior_focal_length)}
        for c in model.cameras.values()]
    return {
        "folder": str(photos.root), "images": len(photos.photos), "registered": len(posed),
        "registered_share": round(len(posed) / max(len(photos.photos), 1), 4),
        "rejected": rejected, "rejected_by_reason": reason_counts(rejected), "left_out": photos.left_out,
        "mapper_attempts": attempts, "cameras": cameras,
        "points": model.num_points3D() if model is not None else 0,
        "mean_reprojection_error_px": round(model.compute_mean_reprojection_error(), 4) if model is not None else None,
        "mean_keypoints": round(float(np.mean(list(keypoints.values()))), 1) if keypoints else 0.0,
    }
