"""Shared fixtures: a tiny synth capture and its conversion, made once per test session."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """The real `nrconvert` command line, in its own process."""
    return subprocess.run([sys.executable, "-m", "nrconvert.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="session")
def tiny_capture(tmp_path_factory) -> Path:
    pytest.importorskip("bpy", reason="synth captures need bpy (pip install 'nrconvert[blender]')")
    out = tmp_path_factory.mktemp("synth") / "suzanne"
    res = run_cli("synth", str(out), "--object", "suzanne", "--preset", "tiny")
    assert res.returncode == 0, res.stderr
    return out


@pytest.fixture(scope="session")
def tiny_conversion(tiny_capture, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("convert") / "scene.glb"
    res = run_cli(str(tiny_capture), "-o", str(out), "--preset", "tiny", "--progress", "json")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return out, res
