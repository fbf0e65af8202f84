"""The report's files besides the page: held-out photo/render pairs, the GLB (and its .hdr) as a
script the 3D view can load from disk, and the viewer bundle.

Why a script and not the .glb itself: a page opened by double-click (file://) may not fetch()
other files, but it may run a classic <script src>. So the GLB goes into scene.glb.js as base64
(window.NRC_GLB); the real GLB beside the report stays the asset, this is a copy for viewing.
"""
from __future__ import annotations

import base64
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..capture.images import load_frame_image
from ..capture.model import Capture
from ..mesh import Mesh
from ..metrics.evaluate import render_textured

BUNDLE = Path(__file__).with_name("viewer.bundle.js")
BUNDLE_MARK = "nrconvert report viewer bundle; inputs: "
MAX_EMBED_BYTES = 64 << 20  # above this the page shows a note instead of the 3D view
MAX_VIEWS = 8  # held-out pairs shown
MAX_SIDE = 512  # px, long side of a shown photo or render


@dataclass
class ViewPair:
    """One held-out view: the photo (over black where it has a mask) and the asset's render."""

    file: str
    photo: np.ndarray  # (H, W, 3) uint8
    render: np.ndarray  # (H, W, 3) uint8


def heldout_pairs(capture: Capture, mesh: Mesh, texture: np.ndarray, n: int = MAX_VIEWS) -> list[ViewPair]:
    """Photo and textured-mesh render for the first `n` held-out views, as the metrics saw them
    (full resolution, the same renderer as metrics.evaluate)."""
    pairs = []
    for frame in capture.test[:n]:
        render, _ = render_textured(mesh, texture, frame)
        rgb, alpha = load_frame_image(frame)
        photo = rgb * alpha[..., None] if alpha is not None else rgb
        pairs.append(ViewPair(frame.image_path.name, _bytes(photo), _bytes(render)))
    return pairs


def _bytes(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def comparison_image(pairs: list[ViewPair], n: int = 4) -> np.ndarray:
    """Rows of (photo | render) for the first `n` pairs: heldout.png, one picture to share."""
    return np.concatenate([np.concatenate([p.photo, p.render], axis=1) for p in pairs[:n]], axis=0)


def write_pairs(folder: Path, pairs: list[ViewPair]) -> list[dict]:
    """views/NN_photo.png and views/NN_render.png (long side at most MAX_SIDE px); returns
    [{file, photo, render}] with the paths relative to the report folder."""
    (folder / "views").mkdir(exist_ok=True)
    out = []
    for i, p in enumerate(pairs):
        names = {kind: f"views/{i:02d}_{kind}.png" for kind in ("photo", "render")}
        _thumbnail(p.photo).save(folder / names["photo"])
        _thumbnail(p.render).save(folder / names["render"])
        out.append({"file": p.file, **names})
    return out


def _thumbnail(image: np.ndarray) -> Image.Image:
    im = Image.fromarray(image)
    if max(im.size) > MAX_SIDE:
        im.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    return im


def write_glb_script(folder: Path, glb: Path, limit: int = MAX_EMBED_BYTES) -> str | None:
    """scene.glb.js with the GLB (and its .hdr when there is one) as base64; returns why the 3D
    view is left out instead (None when it is written)."""
    size = glb.stat().st_size
    if size > limit:
        return (f"The GLB is {size / 2**20:.0f} MiB, over the {limit >> 20} MiB the report embeds for its "
                f"3D view: open {glb.name} in a glTF viewer or Blender instead.")
    lines = [b"// The run's GLB for index.html's 3D view (a copy: the asset is the .glb file itself).\n",
             b'window.NRC_GLB = "' + base64.b64encode(glb.read_bytes()) + b'";\n']
    hdr = glb.with_suffix(".hdr")
    if hdr.is_file() and hdr.stat().st_size <= limit:
        lines.append(b'window.NRC_HDR = "' + base64.b64encode(hdr.read_bytes()) + b'";\n')
    (folder / "scene.glb.js").write_bytes(b"".join(lines))
    return None


def copy_bundle(folder: Path) -> str | None:
    """viewer.bundle.js (three.js + the viewer, see tools/web/build_report_bundle.mjs); returns
    why the 3D view is left out instead (None when it is copied)."""
    if not BUNDLE.is_file():
        return f"The 3D view's script ({BUNDLE}) is missing from this installation: reinstall nrconvert."
    shutil.copyfile(BUNDLE, folder / BUNDLE.name)
    return None


def bundle_inputs(bundle: Path = BUNDLE) -> dict[str, str]:
    """{repository path: sha256} of the sources the bundle was built from (its first line)."""
    with open(bundle, encoding="utf-8") as f:
        first = f.readline()
    match = re.match(r"/\*! " + re.escape(BUNDLE_MARK) + r"(\{.*\}) \*/$", first.strip())
    if not match:
        raise ValueError(f"{bundle} has no input record on its first line: rebuild it "
                         "(cd tools/web && node build_report_bundle.mjs)")
    return json.loads(match.group(1))
