"""Turntable render of an nrconvert GLB, headless:

    blender -b --python-exit-code 1 --python addon/farm/turntable.py -- --glb X.glb --out DIR \
        [--frames 24 --size 256x256 --samples 16 --lod 0 --light estimated --look pbr]
    python addon/farm/turntable.py -- ...            (with the bpy module installed)

Imports with the nrconvert add-on's importer when it is installed (estimated-light world, LOD
set, neural preview), else Blender's glTF importer; orbits a camera around the chosen LOD at 20
degrees elevation and writes DIR/turntable_0000.png... Prints `Saved: PATH` per image.
Exit codes: 0 done, 2 usage error, 3 unreadable input, 1 unexpected failure.
"""
from __future__ import annotations

import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import farm_common as fc  # noqa: E402  (after the path line: this folder is not a package)


def main() -> None:
    p = fc.parser("turntable.py", "Render a turntable of an nrconvert GLB.")
    p.add_argument("--frames", type=int, default=24, help="images around the full circle")
    p.add_argument("--lod", type=int, default=0, help="which LOD to render")
    p.add_argument("--transparent", action="store_true", help="transparent background (RGBA)")
    args = fc.parse(p)
    if args.frames < 1:
        raise fc.FarmError(f"--frames must be at least 1, got {args.frames}", fc.USAGE)
    doc = fc.check_glb(args.glb)
    asset = fc.import_asset(args.glb)
    if not 0 <= args.lod < len(asset.levels):
        raise fc.FarmError(f"--lod {args.lod}: the file has LODs 0..{len(asset.levels) - 1}", fc.USAGE)
    fc.set_look(asset, args.look)
    fc.show_level(asset, args.lod)
    print(f"Light: {fc.setup_light(asset, args.light, args.glb, doc)}")
    fc.setup_render(args.width, args.height, args.samples, args.transparent)
    centre, radius = fc.bounding_sphere([asset.levels[args.lod]])
    cam = fc.make_camera(centre, radius, args.width, args.height)
    for i in range(args.frames):
        fc.place_camera(cam, centre, 2 * math.pi * i / args.frames)
        fc.render_to(os.path.join(os.path.abspath(args.out), f"turntable_{i:04d}.png"))


if __name__ == "__main__":
    fc.run(main)
