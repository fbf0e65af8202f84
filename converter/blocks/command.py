"""The unit commands of a scene in blocks: `nrconvert split | train | bake | merge`.

Plain command lines a farm task can run (docs/farm.md): they share one work folder (OUTPUT.work/
or --workdir), take the same --blocks and settings, and are idempotent: a unit whose result is
already in the work folder only reloads it, a stopped one continues from its checkpoint, so a
retried task never redoes finished work. Failures exit with the codes of docs/errors.md.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import UsageError

PROGRESS = ("rich", "json", "none", "openjd")
UNIT_STAGES = ("train", "extract", "bake", "neural")


def check_blocks(value: str | None) -> str | None:
    """`auto` or a whole number >= 1, as a string (it is stored as given in blocks.json); None:
    whatever the work folder's layout says (auto if it has none)."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"--blocks must be auto or a whole number >= 1, got {value!r}")
    return str(int(text))


def reporter_for(mode: str):
    from ..pipeline import SilentReporter
    from ..progress import JsonReporter, RichReporter
    from .openjd import OpenJdReporter

    if mode not in PROGRESS:
        raise UsageError(f"--progress must be one of {', '.join(PROGRESS)}, got {mode!r}")
    return {"rich": RichReporter, "json": JsonReporter, "none": SilentReporter, "openjd": OpenJdReporter}[mode]()


def make_run(capture: Path, output: Path, *, preset: str, workdir: Optional[Path], sets: list[str],
             lods: Optional[int], texture_size: Optional[int], pbr: bool, neural: bool, validate: bool,
             progress: str, redo: Optional[str] = None, resume: bool = True):
    """The Run every unit command works through (the convert command's settings, same checks)."""
    from ..config import config_from_options
    from ..pipeline import Run

    if redo is not None and redo not in UNIT_STAGES:
        raise UsageError(f"--redo must be one of {', '.join(UNIT_STAGES)}")
    cfg = config_from_options(preset, sets, lods, texture_size, pbr, neural)
    return Run(capture, output, cfg, workdir=workdir, resume=resume or bool(redo), redo=redo, validate=validate,
               reporter=reporter_for(progress))


def _closing(run, fn, *args):
    try:
        return fn(run, *args)
    finally:
        getattr(run.reporter, "close", lambda: None)()


CAPTURE = typer.Argument(..., help="Capture folder (as for nrconvert CAPTURE).")
OUTPUT = typer.Option(..., "-o", "--output", help="The final .glb; the shared work folder is OUTPUT.work/.")
BLOCKS = typer.Option(None, "--blocks", help="auto | N: blocks the scene is split into (same for every unit; "
                      "default: the work folder's layout, else auto).")
BLOCK = typer.Option(..., "--block", help="Which block (1 to N).")
PRESET = typer.Option("balanced", help="tiny | fast | balanced | quality (same for every unit).")
WORKDIR = typer.Option(None, help="Shared work folder (default OUTPUT.work/).")
SETS = typer.Option([], "--set", help="Override settings, e.g. --set steps=4000 or --set steps=4000,threads=4 "
                    "(the same for every unit).")
LODS = typer.Option(None, "--lods", help="LOD levels including LOD0.")
TEXTURE = typer.Option(None, "--texture-size", help="LOD0 texture side of each block, a power of two.")
PBR = typer.Option(True, help="Estimate light + PBR material.")
NEURAL = typer.Option(True, help="Distil the neural material.")
VALIDATE = typer.Option(True, help="Check GLBs with the Khronos glTF-Validator.")
PROGRESS_OPT = typer.Option("rich", "--progress", help="rich | json | none | openjd (openjd_progress: N lines).")
REDO = typer.Option(None, help="Re-run this stage of the block and the ones after it.")


def split(capture: Path = CAPTURE, output: Path = OUTPUT, blocks: str = BLOCKS, preset: str = PRESET,
          workdir: Optional[Path] = WORKDIR, set_: list[str] = SETS, progress: str = PROGRESS_OPT) -> None:
    """Split the scene into blocks (WORK/blocks.json) and print the layout as JSON."""
    from .run import split_unit

    run = make_run(capture, output, preset=preset, workdir=workdir, sets=set_, lods=None, texture_size=None,
                   pbr=True, neural=True, validate=True, progress=progress)
    layout = _closing(run, split_unit, check_blocks(blocks))
    print(json.dumps({"blocks": len(layout.blocks), "ids": [b.id for b in layout.blocks],
                      "layout": str(run.workdir / "blocks.json")}))


def train(capture: Path = CAPTURE, output: Path = OUTPUT, block: int = BLOCK, blocks: str = BLOCKS,
          preset: str = PRESET, workdir: Optional[Path] = WORKDIR, set_: list[str] = SETS,
          progress: str = PROGRESS_OPT, redo: Optional[str] = REDO) -> None:
    """Train one block's field into the shared work folder (resumes a stopped one)."""
    from .run import train_unit

    run = make_run(capture, output, preset=preset, workdir=workdir, sets=set_, lods=None, texture_size=None,
                   pbr=True, neural=True, validate=True, progress=progress, redo=redo)
    _closing(run, train_unit, check_blocks(blocks), block)
    print(f"Trained block {block}: {run.workdir / f'block_{block:02d}' / 'field.pt'}")


def bake(capture: Path = CAPTURE, output: Path = OUTPUT, block: int = BLOCK, blocks: str = BLOCKS,
         preset: str = PRESET, workdir: Optional[Path] = WORKDIR, set_: list[str] = SETS,
         lods: Optional[int] = LODS, texture_size: Optional[int] = TEXTURE, pbr: bool = PBR, neural: bool = NEURAL,
         progress: str = PROGRESS_OPT, redo: Optional[str] = REDO) -> None:
    """Extract, bake and distil one trained block (block_NN/block.json marks it finished)."""
    from .run import bake_unit

    run = make_run(capture, output, preset=preset, workdir=workdir, sets=set_, lods=lods, texture_size=texture_size,
                   pbr=pbr, neural=neural, validate=True, progress=progress, redo=redo)
    _closing(run, bake_unit, check_blocks(blocks), block)
    print(f"Baked block {block}: {run.workdir / f'block_{block:02d}' / 'block.json'}")


def merge(capture: Path = CAPTURE, output: Path = OUTPUT, blocks: str = BLOCKS, preset: str = PRESET,
          workdir: Optional[Path] = WORKDIR, set_: list[str] = SETS, tiles: bool = typer.Option(
              False, "--tiles/--no-tiles", help="One GLB per block (OUTPUT_blockNN.glb) plus OUTPUT.index.json."),
          validate: bool = VALIDATE, progress: str = PROGRESS_OPT) -> None:
    """Stitch the finished blocks into one GLB (a node per block) or tiles, with the report."""
    from .run import merge_unit

    run = make_run(capture, output, preset=preset, workdir=workdir, sets=set_, lods=None, texture_size=None,
                   pbr=True, neural=True, validate=validate, progress=progress)
    result = _closing(run, merge_unit, check_blocks(blocks), tiles)
    print_result(result, run.output, tiles)


def print_result(result, output: Path, tiles: bool) -> None:
    """The lines a person (or a farm log) looks for: quality, where the files are."""
    from .merge import index_path

    held = result.metrics.get("heldout", {})
    if "psnr_object" in held:
        print(f"held-out PSNR (object): {held['psnr_object']:.2f} dB")
    print(f"Tiles:  {index_path(output)}" if tiles else f"GLB:    {result.glb}")
    print(f"Report: {result.report_dir / 'index.html'}")


def convert_in_blocks(run, blocks: str | None, tiles: bool):
    """`nrconvert CAPTURE -o OUT --blocks N [--tiles]`: every unit in this process."""
    from .run import convert_blocks

    return convert_blocks(run, check_blocks(blocks), tiles)


def register(app: typer.Typer) -> None:
    for fn in (split, train, bake, merge):
        app.command(fn.__name__)(fn)
