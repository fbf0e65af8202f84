"""scene.report/, written whole or not at all: every file goes into a temporary folder beside it,
which then replaces the old report in two renames. A reader (or a browser tab being refreshed)
sees the previous report or the new one, never half of each; a failed run leaves the old one.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from .. import __version__
from ..capture.model import Capture
from ..checkpoint import write_json
from ..errors import os_error
from ..export.container import _umask
from ..export.reader import GlbError
from ..mesh import Mesh
from .assets import (MAX_SIDE, comparison_image, copy_bundle, heldout_pairs, write_glb_script,
                     write_pairs)
from .html import Page, render_page
from .lods import lod_rows


def write_report(report_dir: Path, capture: Capture, mesh: Mesh, texture: np.ndarray, metrics: dict,
                 timings: dict, history: list[dict], glb: Path) -> None:
    """The report of one run: metrics.json, training.json, heldout.png, views/, the 3D view's
    scene.glb.js + viewer.bundle.js, and index.html. Raises OutputError / DiskFullError naming
    the folder when it cannot be written."""
    report_dir, glb = Path(report_dir), Path(glb)
    metrics = {**metrics, "version": metrics.get("version", __version__),
               "timings_s": {k: round(v, 2) for k, v in timings.items()},
               "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "glb": str(glb)}
    pairs = heldout_pairs(capture, mesh, texture)  # rendering first: nothing is on disk yet
    tmp = None
    try:
        report_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=report_dir.parent, prefix=f".{report_dir.name}.", suffix=".tmp"))
        _fill(tmp, metrics, history, pairs, glb)
        _swap(tmp, report_dir)
        tmp = None
    except OSError as exc:
        raise os_error(exc, str(report_dir), "the report") from exc
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _fill(folder: Path, metrics: dict, history: list[dict], pairs, glb: Path) -> None:
    write_json(folder / "metrics.json", metrics)
    write_json(folder / "training.json", {"history": history})
    files = ["metrics.json", "training.json"]
    views = []
    if pairs:
        Image.fromarray(comparison_image(pairs)).save(folder / "heldout.png")
        files.append("heldout.png")
        views = [{**v, "small": max(p.photo.shape[:2]) < MAX_SIDE // 2}
                 for v, p in zip(write_pairs(folder, pairs), pairs)]
    try:
        rows, lod_error = lod_rows(glb), None
    except (GlbError, KeyError, IndexError, TypeError, ValueError) as exc:
        rows, lod_error = None, str(exc) or type(exc).__name__
    note = copy_bundle(folder) or write_glb_script(folder, glb)
    page = Page(glb_name=glb.name, glb_bytes=glb.stat().st_size, metrics=metrics,
                timings=metrics["timings_s"], history=history, views=views, lods=rows, lod_error=lod_error,
                viewer_note=note, files=files)
    (folder / "index.html").write_text(render_page(page), encoding="utf-8")
    os.chmod(folder, 0o777 & ~_umask())  # mkdtemp makes 0700; the report gets the usual mode


def _swap(new: Path, final: Path) -> None:
    """Put `new` where `final` is: old out of the way, new in, old deleted."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    try:
        os.replace(new, final)
    except OSError:
        if old is not None:
            os.replace(old, final)  # put the previous report back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
