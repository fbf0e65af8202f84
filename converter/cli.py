"""Thin command line over the library: `nrconvert CAPTURE -o scene.glb` and a few tools."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from . import __version__
from .errors import InterruptedRun, NrcError, OutOfMemoryError, UsageError, os_error

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Turn a capture (photos + poses) into a production glTF asset.")
console = Console(stderr=True)

# MKL picks its code path by memory alignment unless told not to, so two runs of the same job
# differed in the last bits (~0.2 dB after training); pinned, with `--set threads=1`, runs
# mostly repeat exactly (a rare last-bit difference remains, see docs/errors.md).
os.environ.setdefault("MKL_CBWR", "AVX2")
COMMANDS = {"convert", "synth", "validate", "render", "build-ext", "version", "batch", "split", "train", "bake",
            "merge", "--help", "-h"}


@app.command()
def convert(
    capture: Path = typer.Argument(..., help="Capture folder: transforms.json, a COLMAP model + images, or photos (posed by SfM)."),
    output: Path = typer.Option(..., "-o", "--output", help="Output .glb path."),
    preset: str = typer.Option("balanced", help="tiny | fast | balanced | quality"),
    workdir: Optional[Path] = typer.Option(None, help="Stage outputs (default: OUTPUT.work/ next to the GLB)."),
    resume: bool = typer.Option(False, "--resume", help="Reuse finished stages in the work folder."),
    redo: Optional[str] = typer.Option(None, help="Re-run this stage and the ones after it: train|extract|bake|neural|export."),
    lods: Optional[int] = typer.Option(None, "--lods", help="LOD levels including LOD0 (default 4; 1 = no chain)."),
    texture_size: Optional[int] = typer.Option(None, "--texture-size",
                                               help="LOD0 texture side, a power of two (default 2048; LODs halve it)."),
    pbr: bool = typer.Option(True, help="Estimate light + PBR material; --no-pbr ships the captured look only."),
    neural: bool = typer.Option(True, help="Distil the view-dependent look into a neural material (NRC_neural_material)."),
    set_: list[str] = typer.Option([], "--set", help="Override any setting, e.g. --set steps=4000."),
    validate: bool = typer.Option(True, help="Check the GLB with the Khronos glTF-Validator."),
    progress: str = typer.Option("rich", help="rich | json | none | openjd (openjd_progress: N lines, for farms)"),
    blocks: Optional[str] = typer.Option(None, "--blocks", help="auto | N: a large scene in overlapping blocks, one field each (docs/farm.md)."),
    tiles: bool = typer.Option(False, "--tiles", help="With --blocks: one GLB per block plus OUTPUT.index.json."),
    masks: Optional[Path] = typer.Option(None, "--masks", help="Photos without poses: folder of object masks (NAME.png or same stem)."),
    max_images: Optional[int] = typer.Option(None, "--max-images", help="Photos without poses: use at most N, evenly spread."),
    downscale: Optional[int] = typer.Option(None, "--downscale", help="Train on the photos shrunk N times (large photos or sets; same as --set downscale=N)."),
    sfm_max_size: int = typer.Option(2000, "--sfm-max-size", help="Photos without poses: long side SIFT sees (larger are shrunk)."),
    sfm_matcher: str = typer.Option("auto", "--sfm-matcher", help="Photos without poses: auto | exhaustive | sequential."),
) -> None:
    """Convert a capture into a GLB (plus OUTPUT.report/ with metrics)."""
    from .config import config_from_options
    from .pipeline import STAGES, Run, convert as run_convert

    if redo and redo not in STAGES:
        raise UsageError(f"--redo must be one of {', '.join(STAGES)}")
    cfg = config_from_options(preset, set_, lods, texture_size, pbr, neural, downscale)
    if tiles and not blocks:
        raise UsageError("--tiles needs --blocks")
    reporter = reporter_for(progress)
    run = Run(capture, output, cfg, workdir=workdir, resume=resume or bool(redo), redo=redo,
              validate=validate, reporter=reporter,
              sfm=_sfm_options(masks, max_images, sfm_max_size, sfm_matcher, cfg.seed))
    try:
        result = convert_in_blocks(run, blocks, tiles) if blocks else run_convert(run)
    finally:
        getattr(reporter, "close", lambda: None)()
    _summary(result, progress)


def _sfm_options(masks, max_images, max_size, matcher, seed):
    from .capture.sfm import SfmOptions

    if max_images is not None and max_images < 3:
        raise UsageError(f"--max-images must be at least 3, got {max_images}")
    if max_size < 100:
        raise UsageError(f"--sfm-max-size must be at least 100 pixels, got {max_size}")
    if matcher not in ("auto", "exhaustive", "sequential"):
        raise UsageError(f"--sfm-matcher must be auto, exhaustive or sequential, got {matcher!r}")
    return SfmOptions(masks=masks, max_images=max_images, max_size=max_size, matcher=matcher, seed=seed)


def _summary(result, mode: str) -> None:
    held = result.metrics.get("heldout", {})
    geo = result.metrics.get("geometry", {})
    if mode == "json":
        import json

        print(json.dumps({"event": "done", "glb": str(result.glb), "report": str(result.report_dir),
                          "timings": result.timings, "psnr_object": held.get("psnr_object")}))
        return
    table = Table(title="nrconvert summary")
    table.add_column("what"); table.add_column("value", justify="right")
    for stage, sec in result.timings.items():
        table.add_row(f"time: {stage}", f"{sec:.1f} s")
    table.add_row("time: total", f"{sum(result.timings.values()):.1f} s")
    table.add_row("triangles", f"{result.metrics.get('triangles', 0):,}")
    table.add_row("texture", "x".join(map(str, result.metrics.get("texture_size", []))))
    if "psnr_object" in held:
        table.add_row("held-out PSNR (object)", f"{held['psnr_object']:.2f} dB")
        table.add_row("held-out SSIM (object)", f"{held['ssim_object']:.3f}")
    if geo:
        table.add_row("Chamfer / bbox diag", f"{geo['chamfer_ratio_of_bbox_diagonal'] * 100:.2f} %")
        table.add_row("F-score @1%", f"{geo['fscore']:.3f}")
    Console().print(table)
    from .capture.sfm_summary import summary_lines_of

    for line in summary_lines_of(result.workdir):
        print(line)
    print(f"GLB:    {result.glb}")
    print(f"Report: {result.report_dir / 'index.html'}")


@app.command()
def synth(
    out_dir: Path = typer.Argument(..., help="Folder to write the capture into."),
    object: str = typer.Option("suzanne", help="suzanne | suzanne_specular | torus_knot | box | materials | street (a row of objects)"),
    preset: str = typer.Option("tiny", help="tiny | standard | large"),
    seed: int = typer.Option(0),
    background: str = typer.Option("transparent", help="transparent (RGBA, masked) | opaque (HDRI behind)"),
    hdri: str = typer.Option("forest.exr", help="One of Blender's bundled studio-light HDRIs."),
    relight_hdri: str = typer.Option("courtyard.exr", help="HDRI for the relighting test views."),
) -> None:
    """Render a synthetic test capture with Blender (needs bpy: pip install 'nrconvert\\[blender]')."""
    from .progress import RichReporter
    from .synth import render_capture

    rep = RichReporter()
    rep.start("synth", None)
    try:
        path = render_capture(out_dir, object=object, preset=preset, seed=seed, background=background,
                              hdri=hdri, relight_hdri=relight_hdri,
                              progress=lambda d, t: rep.update("synth", d, t))
        rep.end("synth")
    finally:
        rep.close()
    print(f"Capture: {path}")


@app.command("validate")
def validate_cmd(glb: Path = typer.Argument(..., help="GLB file to check.")) -> None:
    """Run the Khronos glTF-Validator on a GLB; exit 7 on errors."""
    from .export.validate import validate_glb
    from .errors import ValidationError

    report = validate_glb(glb)
    print(report.format())
    if not report.ok:
        raise ValidationError(f"{report.errors} error(s)", path=str(glb))


@app.command()
def render(
    glb: Path = typer.Argument(..., help="An nrconvert GLB."),
    camera: Path = typer.Option(..., "--camera", help="transforms.json-style file with the camera(s), capture frame."),
    frame: int = typer.Option(0, "--frame", help="Which camera of that file."),
    output: Path = typer.Option(..., "-o", "--output", help="Output .png (RGBA, alpha = coverage)."),
    look: str = typer.Option("neural", help="neural (NRC_neural_material) | captured (unlit texture)"),
    lod: int = typer.Option(0, "--lod", help="Which LOD to render."),
    downscale: int = typer.Option(1, "--downscale", help="Render at the camera's size divided by this."),
    samples: int = typer.Option(1, "--samples", help="Anti-alias: N x N sub-pixels per pixel (1: one sample, as the decoders are compared)."),
) -> None:
    """Render an asset with the reference decoders: the ground truth for every other viewer."""
    from .render.render_cli import render_to_png

    print(f"Saved: {render_to_png(glb, camera, frame, output, look=look, lod=lod, downscale=downscale, samples=samples)}")


@app.command("build-ext")
def build_ext() -> None:
    """Build the C++/CUDA kernels now, showing the compiler log; exit 8 if they cannot be built."""
    import torch

    from .kernels import backend, build_extension

    path = build_extension(verbose=True)
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        print(f"backend ({device}): {backend(device)}")
    print(f"library: {path}")


from .batch.command import batch as _batch  # noqa: E402  many captures, locally or on Ray (docs/batch.md)

app.command("batch")(_batch)
from .blocks.command import convert_in_blocks, register as _register_blocks, reporter_for  # noqa: E402

_register_blocks(app)  # split / train / bake / merge: a scene in blocks, unit by unit (docs/farm.md)


@app.command()
def version() -> None:
    """Print the version."""
    print(__version__)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] not in COMMANDS and not args[0].startswith("-"):
        args.insert(0, "convert")  # `nrconvert photos/ -o scene.glb`
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        try:
            code = app(args, standalone_mode=False)
        except (KeyboardInterrupt, MemoryError, OSError) as exc:
            raise as_nrc_error(exc) from exc
        if code == 130:  # typer catches KeyboardInterrupt (Ctrl-C, SIGTERM) itself and returns 130
            raise as_nrc_error(KeyboardInterrupt())
    except NrcError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)  # paths stay whole
        if isinstance(exc, InterruptedRun):
            _exit_now(exc.exit_code)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # usage errors (click-style, vendored by newer typer)
        if callable(getattr(exc, "show", None)) and hasattr(exc, "exit_code"):
            exc.show()
            sys.exit(2)
        if _is_torch_oom(exc):
            console.print(f"[bold red]error:[/] {as_nrc_error(MemoryError(str(exc)))}", highlight=False)
            sys.exit(OutOfMemoryError.exit_code)
        raise


def _on_sigterm(signum, frame) -> None:
    """Farms stop jobs with SIGTERM: unwind like Ctrl-C so temp files go and the exit code says retry."""
    raise KeyboardInterrupt


def _exit_now(code: int) -> None:
    """Exit with `code` at once. After a KeyboardInterrupt (Ctrl-C, or our SIGTERM handler's) that
    landed in some library call, CPython may still end the process by SIGINT at interpreter exit,
    whatever sys.exit said: measured, exit -2 instead of 79 in 6 of 12 SIGTERMs on the tiny
    capture, so a farm would not see its retry code. The run is already unwound here (temp
    files gone, checkpoint kept): only the buffers are left to flush."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _is_torch_oom(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def as_nrc_error(exc: BaseException) -> NrcError:
    """Failures raised outside our own checks, in the classes farms branch on."""
    if isinstance(exc, KeyboardInterrupt):
        return InterruptedRun("the run was stopped; finished stages and the last training checkpoint are kept",
                              hint="re-run the same command with --resume to continue")
    if isinstance(exc, MemoryError):
        return OutOfMemoryError("out of memory", hint="use a smaller preset (--preset fast), fewer images "
                                "(--max-images) or a machine with more memory, then re-run with --resume")
    if isinstance(exc, OSError):
        return os_error(exc, getattr(exc, "filename", None) or "(unknown file)", "a file")
    raise TypeError(exc)


if __name__ == "__main__":
    main()
