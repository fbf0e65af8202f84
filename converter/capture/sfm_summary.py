"""Which photos SfM posed, which it rejected and why, and the error when too few were posed.

The user's next step depends on *why* photos were lost: no features (blur, no texture, too
dark), no matches (not enough overlap with the others) or matched but not posed (few or
ambiguous matches, a separate cluster of photos). The reasons come from the SfM database
(keypoints per image, verified pairs) and the reconstructions the mapper returned.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from ..errors import SfmError

FEW_FEATURES = 30  # keypoints below which a photo is reported as "few features"
MIN_REGISTERED_SHARE = 0.5

REASON_FEATURES = "few features"
REASON_MATCHES = "no matches"
REASON_OTHER_MODEL = "in a separate, smaller model"
REASON_NOT_REGISTERED = "not registered"
REASON_TEXT = {
    REASON_FEATURES: "fewer than {FEW_FEATURES} keypoints: blurred, too dark, or no texture",
    REASON_MATCHES: "no verified matches with any other photo: not enough overlap",
    REASON_OTHER_MODEL: "posed with other photos that do not connect to the main group",
    REASON_NOT_REGISTERED: "matched, but its pose could not be estimated from the main group",
}


def rejection(name: str, keypoints: int, matched: bool, other_model: int | None) -> dict:
    """The summary entry of one photo SfM did not pose in the main model."""
    if keypoints < FEW_FEATURES:
        reason, detail = REASON_FEATURES, f"{keypoints} keypoints"
    elif not matched:
        reason, detail = REASON_MATCHES, f"{keypoints} keypoints, no verified pair"
    elif other_model is not None:
        reason, detail = REASON_OTHER_MODEL, f"a model of {other_model} photos"
    else:
        reason, detail = REASON_NOT_REGISTERED, f"{keypoints} keypoints, has verified pairs"
    return {"image": name, "reason": reason, "detail": detail}


def summary_lines(summary: dict) -> list[str]:
    """Human-readable lines for the CLI: counts, then each reason with a few example photos."""
    n, k = summary["images"], summary["registered"]
    lines = [f"SfM posed {k} of {n} photos ({100.0 * k / max(n, 1):.0f} %) with {summary['matcher']} matching"]
    if summary.get("left_out"):
        lines.append(f"  {len(summary['left_out'])} more photos left out by --max-images")
    by_reason: dict[str, list[str]] = {}
    for entry in summary["rejected"]:
        by_reason.setdefault(entry["reason"], []).append(entry["image"])
    for reason, names in by_reason.items():
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        lines.append(f"  rejected, {reason} ({len(names)}): {shown}")
    return lines


def summary_lines_of(workdir: Path) -> list[str]:
    """The summary lines of the SfM run behind the capture of this work folder (none if the
    capture had poses)."""
    try:
        capture = json.loads((Path(workdir) / "capture.json").read_text())
        if capture.get("source") != "images":
            return []
        return summary_lines(json.loads((Path(workdir) / "sfm" / "summary.json").read_text()))
    except (OSError, ValueError, KeyError):
        return []


def check_registered(summary: dict, root: Path, summary_path: Path) -> None:
    """SfmError unless at least half of the photos (and 3) were posed in the main model."""
    n, k = summary["images"], summary["registered"]
    if k >= 3 and k >= MIN_REGISTERED_SHARE * n:
        return
    counts = Counter(entry["reason"] for entry in summary["rejected"])
    why = "; ".join(f"{c} {reason} ({REASON_TEXT[reason].format(FEW_FEATURES=FEW_FEATURES)})"
                    for reason, c in counts.most_common())
    raise SfmError(
        f"structure-from-motion posed only {k} of {n} photos (needs at least half, and 3): {why}",
        path=str(root),
        hint="shoot more photos with more overlap (every part of the object in at least 3 photos, "
        f"steps of 10-20 degrees), sharp and evenly lit; the reasons per photo are in {summary_path}",
    )


def reason_counts(rejected: list[dict]) -> dict[str, int]:
    return dict(Counter(entry["reason"] for entry in rejected))
