"""LOD check sheet of an nrconvert GLB, headless:

    blender -b --python-exit-code 1 --python addon/farm/lod_sheet.py -- --glb X.glb --out DIR \
        [--size 256x256 --samples 16 --light estimated --look pbr]
    python addon/farm/lod_sheet.py -- ...            (with the bpy module installed)

Renders every LOD from the same camera (framed on LOD0, so sizes compare) to DIR/lod_K.png,
puts them side by side in DIR/lod_sheet.png and writes DIR/lod_sheet.json with each level's
object, triangle count, screen-coverage threshold (when the nrconvert add-on imported it) and
image. Prints `Saved: PATH` per file. Exit codes: 0 done, 2 usage error, 3 unreadable input,
1 unexpected failure.
"""
from __future__ import annotations

import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bpy  # noqa: E402
import numpy as np  # noqa: E402

import farm_common as fc  # noqa: E402  (after the path line: this folder is not a package)


def read_png(path: str) -> np.ndarray:
    """(H, W, 4) float pixels, bottom row first (Blender's order)."""
    img = bpy.data.images.load(path)
    w, h = img.size
    px = np.empty(w * h * 4, np.float32)
    img.pixels.foreach_get(px)
    bpy.data.images.remove(img)
    return px.reshape(h, w, 4)


def contact_sheet(paths: list[str], out: str, gap: int = 4) -> str:
    """The level images side by side (left = LOD0) with a gap, written as a PNG."""
    tiles = [read_png(p) for p in paths]
    h, w = tiles[0].shape[:2]
    sheet = np.zeros((h, len(tiles) * (w + gap) - gap, 4), np.float32)
    sheet[..., 3] = 1.0  # opaque black gaps
    for k, tile in enumerate(tiles):
        sheet[:, k * (w + gap):k * (w + gap) + w] = tile
    img = bpy.data.images.new("lod sheet", sheet.shape[1], h, alpha=True)
    img.pixels.foreach_set(sheet.ravel())
    img.filepath_raw, img.file_format = out, "PNG"
    img.save()
    bpy.data.images.remove(img)
    print(f"Saved: {out}", flush=True)
    return out


def main() -> None:
    p = fc.parser("lod_sheet.py", "Render every LOD of an nrconvert GLB side by side.")
    args = fc.parse(p)
    doc = fc.check_glb(args.glb)
    asset = fc.import_asset(args.glb)
    fc.set_look(asset, args.look)
    light = fc.setup_light(asset, args.light, args.glb, doc)
    fc.setup_render(args.width, args.height, args.samples)
    centre, radius = fc.bounding_sphere([asset.levels[0]])
    cam = fc.make_camera(centre, radius, args.width, args.height)
    fc.place_camera(cam, centre, math.radians(30))
    out = os.path.abspath(args.out)
    levels = []
    for k, obj in enumerate(asset.levels):
        fc.show_level(asset, k)
        image = fc.render_to(os.path.join(out, f"lod_{k}.png"))
        record = {"level": k, "object": obj.name, "triangles": fc.triangles(obj), "image": image}
        if asset.root is not None and k < len(asset.root.nrconvert.lods):
            record["screen_coverage"] = asset.root.nrconvert.lods[k].coverage
        levels.append(record)
    sheet = contact_sheet([lvl["image"] for lvl in levels], os.path.join(out, "lod_sheet.png"))
    sidecar = os.path.join(out, "lod_sheet.json")
    with open(sidecar, "w", encoding="utf-8") as f:
        json.dump({"glb": os.path.abspath(args.glb), "importer": asset.addon or "gltf", "light": light,
                   "look": args.look, "size": [args.width, args.height], "sheet": sheet,
                   "levels": levels}, f, indent=2)
    print(f"Saved: {sidecar}", flush=True)


if __name__ == "__main__":
    fc.run(main)
