"""Convert from the UI, with the real `nrconvert` command line in a subprocess.

A modal operator needs Blender's event loop, which background mode lacks, so the tests drive the
very logic the modal operator calls each timer tick (`ConvertRunner.start/tick/cancel`) and call
the operator itself where it blocks (no window: `execute` ticks in a loop). The capture is a tiny
synthetic one (`nrconvert synth --preset tiny`) converted with `--preset tiny` plus a few
`--set` overrides that cut the run to well under a minute on two CPU cores.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest_plugins = ("addon_fixtures",)  # fixtures: addon

NRCONVERT = Path(sys.executable).with_name("nrconvert")
FAST = ("--set steps=40 --set pbr_steps=20 --set texture_fit_iterations=0 --set neural_steps=20 "
        "--set neural_field_views=0 --set mc_resolution=48 --set max_triangles=2000 --texture-size 64")


@pytest.fixture(scope="session")
def tiny_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not NRCONVERT.is_file():
        pytest.skip(f"no nrconvert executable beside {sys.executable}")
    out = tmp_path_factory.mktemp("convert_capture") / "suzanne"
    res = subprocess.run([str(NRCONVERT), "synth", str(out), "--preset", "tiny"], capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return out


@pytest.fixture
def convert(addon):
    """The add-on's convert module, with preferences pointing at the venv's nrconvert."""
    prefs = addon.bpy.context.preferences.addons[addon.module_name].preferences
    prefs.executable, prefs.preset, prefs.extra_args = str(NRCONVERT), "tiny", FAST
    module = addon.submodule("convert")
    assert module is not None, "convert module not registered"
    return module


def drive(runner, context, timeout: float = 600.0) -> tuple[set, list[tuple[float, str]]]:
    """Tick like the modal operator's timer does; (final result, [(progress, stage)] seen)."""
    seen, result, start = [], runner.start(context), time.time()
    while result == {"RUNNING_MODAL"}:
        assert time.time() - start < timeout, "conversion did not finish"
        time.sleep(0.2)
        result = runner.tick(context)
        state = context.window_manager.nrc_convert
        seen.append((state.progress, state.stage))
    return result, seen


def test_convert_runs_the_cli_and_imports_the_result(convert, tiny_capture, tmp_path):
    bpy = convert.bpy
    out = tmp_path / "scene.glb"
    runner = convert.make_runner(bpy.context, str(tiny_capture), str(out))
    assert runner.job.command[:6] == [str(NRCONVERT), str(tiny_capture), "-o", str(out), "--preset", "tiny"]
    t0 = time.time()
    result, seen = drive(runner, bpy.context)
    print(f"convert from UI: {time.time() - t0:.1f} s")
    assert result == {"FINISHED"}, convert.last_messages
    assert out.read_bytes()[:4] == b"glTF"
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert len({round(f, 2) for f in fractions}) >= 5, "the bar should move through the run"
    stages = {s for _, s in seen}
    assert {"Training field", "Baking textures", "Done"} <= stages, stages
    assert runner.job.progress.seen[:2] == ["train", "extract"]
    names = sorted(o.name for o in runner.imported)
    assert any(n.endswith("_LOD0") for n in names) and any(n.endswith("_LOD1") for n in names), names
    meshes = [o for o in runner.imported if o.type == "MESH"]
    assert sum(len(o.data.polygons) for o in meshes) > 1000
    assert not bpy.context.window_manager.nrc_convert.running
    assert "imported" in convert.last_messages[-1][1]


def test_cancel_terminates_and_keeps_the_work_folder(convert, tiny_capture, tmp_path):
    bpy = convert.bpy
    out = tmp_path / "cancelled.glb"
    runner = convert.make_runner(bpy.context, str(tiny_capture), str(out), extra="--set steps=5000")
    assert runner.start(bpy.context) == {"RUNNING_MODAL"}
    deadline = time.time() + 120
    while runner.job.progress.stage != "train":  # cancel once training has started
        assert runner.tick(bpy.context) == {"RUNNING_MODAL"}, convert.last_messages
        assert time.time() < deadline
        time.sleep(0.1)
    assert convert._active["runner"] is runner
    result = runner.cancel(bpy.context)
    assert result == {"CANCELLED"}
    assert runner.job.process.returncode is not None  # the process is gone
    with pytest.raises(ProcessLookupError):
        os.kill(runner.job.process.pid, 0)
    assert not out.exists()
    assert (tmp_path / "cancelled.work").is_dir()
    level, text = convert.last_messages[-1]
    assert level == "WARNING" and "cancelled" in text and "Resume" in text
    assert convert._active["runner"] is None and runner.tick(bpy.context) == {"CANCELLED"}
    again = convert.make_runner(bpy.context, str(tiny_capture), str(out), resume=True)
    assert "--resume" in again.job.command and again.job.workdir == tmp_path / "cancelled.work"


def test_cancel_button_stops_the_run_on_the_next_tick(convert, tiny_capture, tmp_path):
    bpy = convert.bpy
    runner = convert.make_runner(bpy.context, str(tiny_capture), str(tmp_path / "b.glb"))
    assert runner.start(bpy.context) == {"RUNNING_MODAL"}
    assert bpy.ops.nrconvert.convert_cancel() == {"FINISHED"}
    assert runner.tick(bpy.context) == {"CANCELLED"}
    assert not (tmp_path / "b.glb").exists()


def test_failing_run_reports_the_converters_error_and_exit_code(convert, tmp_path):
    """The runner (what the modal operator ticks) returns CANCELLED with the converter's message;
    the blocking operator raises it as Blender does for ERROR reports from scripts."""
    bpy = convert.bpy
    empty = tmp_path / "no_capture"
    empty.mkdir()
    runner = convert.make_runner(bpy.context, str(empty), str(tmp_path / "x.glb"))
    result, _ = drive(runner, bpy.context, timeout=120)
    assert result == {"CANCELLED"}
    assert runner.job.process.returncode == 3
    level, text = convert.last_messages[-1]
    assert level == "ERROR"
    assert "exit code 3" in text and "capture error" in text
    assert "no capture found in this folder" in text  # the converter's own message
    assert bpy.context.window_manager.nrc_convert.message == text  # what the panel shows
    with pytest.raises(RuntimeError, match="exit code 3"):
        bpy.ops.nrconvert.convert(capture_dir=str(empty), filepath=str(tmp_path / "x.glb"))
    assert not (tmp_path / "x.glb").exists()


def test_bad_settings_are_reported_before_anything_runs(convert, tiny_capture, tmp_path):
    bpy = convert.bpy
    with pytest.raises(ValueError, match="capture folder not found"):
        convert.make_runner(bpy.context, str(tmp_path / "missing"), str(tmp_path / "x.glb"))
    with pytest.raises(RuntimeError, match="capture folder not found"):
        bpy.ops.nrconvert.convert(capture_dir=str(tmp_path / "missing"), filepath=str(tmp_path / "x.glb"))
    prefs = bpy.context.preferences.addons[convert.__package__].preferences
    prefs.executable = str(tmp_path / "no-such-nrconvert")
    with pytest.raises(ValueError, match="executable not found"):
        convert.make_runner(bpy.context, str(tiny_capture), str(tmp_path / "x.glb"))
    assert convert._active["runner"] is None


def test_executable_defaults_to_path(convert, monkeypatch):
    job = sys.modules[convert.__package__ + ".convert_job"]
    monkeypatch.setenv("PATH", str(NRCONVERT.parent))
    assert job.find_executable("") == str(NRCONVERT)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert job.find_executable("") is None


def test_progress_ignores_noise_and_never_goes_back(convert):
    job = sys.modules[convert.__package__ + ".convert_job"]
    p = job.ConvertProgress()
    assert not p.feed("warning: something printed by a library")
    assert p.feed('{"stage": "train", "event": "start", "total": 400}')
    assert p.feed('{"stage": "train", "event": "progress", "done": 200, "total": 400, "train_psnr": 25.0}')
    assert p.label == "Training field" and abs(p.fraction - 0.225) < 1e-6 and "25.0 dB" in p.detail
    p.feed('{"stage": "bake", "event": "start", "total": null}')
    mid = p.fraction
    p.feed('{"stage": "bake", "event": "progress", "done": 1, "total": 20}')
    assert p.fraction >= mid and p.label == "Baking textures"
    p.feed('{"event": "done", "glb": "/x.glb"}')
    assert p.fraction == 1.0 and p.done["glb"] == "/x.glb"
