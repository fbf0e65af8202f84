"""Photos without poses: how well pycolmap SfM poses a synth capture, and what it costs in quality.

    python bench/sfm.py [--object suzanne] [--preset fast] [--sfm-only] [--grey-only]

Takes the `standard` synth capture (100 train / 20 test views, 200x200, RGBA; rendered if
missing), hides its poses (a folder with only its train/ and test/ photos), runs SfM on all 120
photos and compares the poses with the ground truth after a Sim(3) alignment (registration,
rotation error, camera-centre error in % of the camera rig's radius). Then converts both the
images-only folder and the known-pose capture with the same preset and compares held-out PSNR on
object pixels; the images-only run's held-out views are posed by SfM like the others (all photos
go through SfM; test/ is held out of training). Saves bench/results/sfm[_OBJECT][_grey].json.
`--grey-only` turns off the opponent-colour features (capture/features.py) for comparison.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def photos_only(capture: Path, folder: Path) -> Path:
    """A folder with the capture's train/ and test/ photos (symlinked) and nothing else."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for split in ("train", "test"):
        (folder / split).symlink_to(capture / split, target_is_directory=True)
    return folder


def sfm_accuracy(capture_dir: Path, capture) -> dict:
    """Pose errors of the SfM capture against the synth capture's own cameras."""
    from nrconvert.capture.align import pose_errors
    from nrconvert.capture.transforms import load_transforms

    truth = {f"{f.image_path.parent.name}/{f.image_path.name}": f.c2w for f in load_transforms(capture_dir).frames}
    keys = [f"{f.image_path.parent.name}/{f.image_path.name}" for f in capture.frames]
    report = pose_errors(np.stack([f.c2w for f in capture.frames]), np.stack([truth[k] for k in keys])).report()
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in report.items()}


def convert_psnr(capture: Path, out: Path, preset: str, *, resume: bool = False) -> dict:
    from nrconvert.config import make_config
    from nrconvert.pipeline import Run, convert

    t = time.time()
    result = convert(Run(capture, out, make_config(preset), resume=resume))
    held = result.metrics.get("heldout", {})
    return {"seconds": round(time.time() - t, 1), "psnr_object": round(held.get("psnr_object", float("nan")), 2),
            "ssim_object": round(held.get("ssim_object", float("nan")), 4), "test_views": held.get("views"),
            "geometry_metrics": "geometry" in result.metrics}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--object", default="suzanne")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--captures", type=Path, default=HERE / ".captures")
    ap.add_argument("--out", type=Path, default=HERE / ".runs")
    ap.add_argument("--sfm-only", action="store_true", help="skip the two conversions")
    ap.add_argument("--grey-only", action="store_true", help="no opponent-colour features")
    args = ap.parse_args()

    from nrconvert.capture.load import load_capture
    from nrconvert.capture.sfm import SfmOptions
    from nrconvert.synth import render_capture

    name = f"{args.object}_standard_transparent"
    capture = args.captures / name
    if not (capture / "transforms_train.json").exists():
        render_capture(capture, object=args.object, preset="standard", background="transparent")
    runs = args.out / f"sfm_{args.object}{'_grey' if args.grey_only else ''}"
    photos = photos_only(capture, runs / "photos")
    images_glb = runs / "images_only.glb"
    work = images_glb.with_suffix(".work")
    shutil.rmtree(work, ignore_errors=True)
    t = time.time()
    sfm_capture = load_capture(photos, workdir=work, sfm=SfmOptions(colour_features=not args.grey_only))
    sfm_seconds = time.time() - t
    summary = json.loads((work / "sfm" / "summary.json").read_text())
    record = {
        "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.node()} {platform.processor()}".strip(),
        "capture": name, "photos": summary["images"], "registered": summary["registered"],
        "registered_pct": round(100.0 * summary["registered"] / summary["images"], 2),
        "sfm_seconds": round(sfm_seconds, 1), "sfm_seconds_by_step": summary.get("seconds_by_step"),
        "mean_keypoints": summary["mean_keypoints"], "points": summary["points"],
        "reprojection_error_px": summary["mean_reprojection_error_px"], "cameras": summary["cameras"],
        "colour_features": not args.grey_only, "pose_errors": sfm_accuracy(capture, sfm_capture),
    }
    print(json.dumps(record))
    if not args.sfm_only:
        record["preset"] = args.preset
        record["images_only"] = convert_psnr(photos, images_glb, args.preset, resume=True)  # reuses the SfM
        known_glb = runs / "known_poses.glb"
        shutil.rmtree(known_glb.with_suffix(".work"), ignore_errors=True)
        record["known_poses"] = convert_psnr(capture, known_glb, args.preset)
        record["psnr_difference_db"] = round(record["known_poses"]["psnr_object"]
                                             - record["images_only"]["psnr_object"], 2)
        print(json.dumps(record))
    suffix = ("" if args.object == "suzanne" else f"_{args.object}") + ("_grey" if args.grey_only else "")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / f"sfm{suffix}.json").write_text(json.dumps(record, indent=2))
    e = record["pose_errors"]
    print(f"| {record['date']} | {name} | {record['registered']}/{record['photos']} | "
          f"{e['rotation_mean_deg']:.2f} / {e['rotation_max_deg']:.2f} deg | {e['centre_mean_pct_radius']:.2f} % | "
          f"{record['sfm_seconds']:.0f} s |")


if __name__ == "__main__":
    main()
