"""Subprocess entry point: `python -m nrconvert.synth._blender_main JOB.json`.

Blender (bpy) only ever runs here, never in a process that imports torch. The job file says what
to put in the scene (a procedural object, the street row or a GLB), the render settings, the
worlds, and the passes of views to render. Progress goes to stdout as JSON lines, errors to stderr.

Exit codes: 0 done, 1 failed (traceback on stderr), 3 bpy could not be imported.
"""
from __future__ import annotations

import json
import sys
import traceback
from typing import Any

EXIT_NO_BPY = 3


def _build_scene(job: dict[str, Any]) -> None:
    """Put the job's content in the scene, and write its ground-truth mesh when asked."""
    from nrconvert.synth import _blender_objects as objects
    from nrconvert.synth.ply import write_ply

    content = job["scene"]
    if "street" in content:
        from nrconvert.synth._blender_street import make_street, street_triangles

        objs = make_street(content["street"])
        if job.get("gt_mesh"):
            write_ply(job["gt_mesh"], *street_triangles(objs))
        return
    if "object" in content:
        obj = objects.make_object(content["object"])
        if job.get("gt_mesh"):
            verts, tris = objects.world_triangles(obj)
            write_ply(job["gt_mesh"], verts, tris)
        return
    from nrconvert.synth._blender_glb import import_glb

    import_glb(content)


def run(job: dict[str, Any]) -> None:
    """Set up the scene and render every pass of the job."""
    from nrconvert.synth import _blender_scene as bs

    scene = bs.reset_scene()
    bs.configure_render(scene, job["render"])
    _build_scene(job)
    worlds = {key: bs.make_world(key, spec) for key, spec in job["worlds"].items()}
    camera = bs.make_camera(scene, job["render"])
    bs.render_passes(scene, camera, worlds, job["passes"])


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m nrconvert.synth._blender_main JOB.json", file=sys.stderr)
        return 2
    try:
        import bpy  # noqa: F401
    except Exception as exc:  # ImportError, or a broken shared library under it
        print(f"cannot import bpy: {exc!r}", file=sys.stderr)
        return EXIT_NO_BPY
    try:
        with open(argv[0], encoding="utf-8") as f:
            job = json.load(f)
        run(job)
    except Exception:
        traceback.print_exc(file=sys.stderr)
        sys.stderr.flush()
        return 1
    return 0


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    sys.exit(main(sys.argv[1:]))
