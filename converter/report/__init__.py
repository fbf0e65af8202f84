"""The per-run report, scene.report/index.html (docs/report.md): metrics, time per stage,
training curves, held-out photo/render pairs, the LOD table and a 3D view of the GLB that works
offline from disk.

Modules: `writer` (the folder, atomically), `html` (the page), `charts` (SVG), `fmt` (numbers),
`assets` (pictures, the embedded GLB, the viewer bundle), `lods` (the LOD table from the GLB).
"""
from .writer import write_report

__all__ = ["write_report"]
