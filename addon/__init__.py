"""nrconvert for Blender: import nrconvert GLBs with their neural material, LOD chain and
estimated light; switch looks and LODs, relight, edit, re-export, and run the converter.

A Blender 4.2+ extension: relative imports only, numpy only (never torch), no network, no runtime
pip. The converter's format code (`NRC_neural_material`, the GLB reader) is vendored into
`_vendor/` by build_addon.py, so the add-on needs nothing but Blender.

Each feature lives in its own module with `register()`/`unregister()`; MODULES is the order they
register in (panels last: they draw properties the others define).
"""
from __future__ import annotations

import importlib

MODULES = (
    "properties",
    "neural_nodes",
    "importer",
    "lod",
    "looks",
    "relight",
    "edit",
    "exporter",
    "convert",
    "panels",
)

_loaded: list = []

# Blender's glTF add-on looks for these names on every enabled add-on's top-level module; they
# act only while our import/export operators run (see importer.py, exporter.py).
from .importer import glTF2ImportUserExtension  # noqa: E402,F401
from .exporter import glTF2ExportUserExtension  # noqa: E402,F401


def _modules():
    out = []
    for name in MODULES:
        try:
            out.append(importlib.import_module(f".{name}", __package__))
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{name}":
                raise  # a real missing dependency inside the module, not an absent feature
    return out


def register() -> None:
    for module in _modules():
        if hasattr(module, "register"):
            module.register()
            _loaded.append(module)


def unregister() -> None:
    while _loaded:
        module = _loaded.pop()
        if hasattr(module, "unregister"):
            module.unregister()
