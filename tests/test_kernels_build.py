"""Building and loading the kernels: fallback to the torch reference, nvcc builds, `nrconvert build-ext`.

Each loader scenario runs in its own process: the loader decides once per process.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from nrconvert.kernels.loader import SOURCE_DIR

# Encodes and composites twice each (forward + backward), records the nrconvert warnings, and
# compares with the references computed in the same process.
SCRIPT = r"""
import json, warnings
import torch
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from nrconvert.kernels import backend
    from nrconvert.kernels.composite import composite, composite_ref
    from nrconvert.kernels.hashgrid import hash_encode, hash_encode_ref
    from nrconvert.fields.hashgrid import HashGrid, HashGridConfig
    g = HashGrid(HashGridConfig(levels=4, log2_table=10, base_resolution=4, max_resolution=64))
    x = torch.rand(200, 3)
    offsets = torch.tensor([0, 50, 120, 200])
    diffs = []
    for _ in range(2):
        out = hash_encode(x, g.table, g.resolutions, g.offsets)
        out.sum().backward()
        diffs.append(float((out - hash_encode_ref(x, g.table, g.resolutions, g.offsets)).abs().max()))
        rgb, op, depth = composite(x[:, 0], x, x[:, 1], offsets, 1e-3)
        diffs.append(float((op - composite_ref(x[:, 0], x, x[:, 1], offsets, 1e-3)[1]).abs().max()))
    msgs = [str(w.message) for w in caught if "nrconvert" in str(w.message)]
print(json.dumps({"backend": backend("cpu"), "warnings": msgs, "diff": max(diffs)}))
"""


def _run(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    full = {**os.environ, **env}
    cmd = [sys.executable, *(args or ("-c", SCRIPT))]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, env=full, timeout=timeout)


def _report(res: subprocess.CompletedProcess) -> dict:
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_forced_reference_warns_once_and_matches():
    rep = _report(_run({"NRCONVERT_KERNELS": "torch"}))
    assert rep["backend"] == "torch"
    assert len(rep["warnings"]) == 1, rep["warnings"]
    assert "NRCONVERT_KERNELS=torch" in rep["warnings"][0] and "nrconvert build-ext" in rep["warnings"][0]
    assert rep["diff"] == 0.0


def test_broken_compiler_falls_back_with_one_warning(tmp_path):
    env = {"CXX": "/bin/false", "NRCONVERT_EXT_DIR": str(tmp_path), "NRCONVERT_KERNELS": "auto"}
    rep = _report(_run(env))
    assert rep["backend"] == "torch"
    assert len(rep["warnings"]) == 1, rep["warnings"]
    assert "build failed" in rep["warnings"][0] and "pure-torch reference" in rep["warnings"][0]
    assert rep["diff"] == 0.0
    assert list(tmp_path.glob("*/build.log")), "the build log is kept for `nrconvert build-ext`"
    again = _report(_run(env))  # the failure is remembered: no second build attempt, same warning
    assert again["warnings"] == rep["warnings"]


def test_missing_compiler_falls_back(tmp_path):
    env = {"CXX": str(tmp_path / "no-such-c++"), "NRCONVERT_EXT_DIR": str(tmp_path), "NRCONVERT_KERNELS": "auto"}
    rep = _report(_run(env))
    assert rep["backend"] == "torch"
    assert len(rep["warnings"]) == 1 and "no C++ compiler" in rep["warnings"][0]


def test_ext_mode_makes_a_failed_build_an_error(tmp_path):
    env = {"CXX": "/bin/false", "NRCONVERT_EXT_DIR": str(tmp_path), "NRCONVERT_KERNELS": "ext"}
    res = _run(env)
    assert res.returncode != 0
    assert "DependencyError" in res.stderr and "NRCONVERT_KERNELS=ext" in res.stderr


def test_build_ext_command_builds_and_reports():
    res = _run({"NRCONVERT_KERNELS": "auto"}, "-m", "nrconvert.cli", "build-ext", timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "backend (cpu): cpu-ext" in res.stdout
    lib = Path(res.stdout.split("library:")[1].split()[0])
    assert lib.is_file() and lib.suffix == ".so"


def test_build_ext_command_without_compiler_exits_8(tmp_path):
    env = {"CXX": str(tmp_path / "no-such-c++"), "NRCONVERT_EXT_DIR": str(tmp_path)}
    res = _run(env, "-m", "nrconvert.cli", "build-ext")
    assert res.returncode == 8, res.stdout + res.stderr
    assert "no C++ compiler" in res.stderr


def test_sources_ship_as_package_data():
    """What pyproject's package-data globs take: every source the loader compiles."""
    shipped = {p.name for p in SOURCE_DIR.glob("*.cpp")} | {p.name for p in SOURCE_DIR.glob("*.cu")}
    assert {"hashgrid.cpp", "hashgrid_cuda.cu", "composite.cpp", "composite_cuda.cu"} <= shipped
    assert (SOURCE_DIR / "include" / "nrc" / "common.h").is_file()
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    for glob in ('"cuda_ext/*.cpp"', '"cuda_ext/*.cu"', '"cuda_ext/include/nrc/*.h"'):
        assert glob in text


NVCC = shutil.which("nvcc")


@pytest.mark.skipif(NVCC is None, reason="nvcc not on PATH: CUDA sources not compiled here")
@pytest.mark.parametrize("source", sorted(p.name for p in SOURCE_DIR.glob("*.cu")))
def test_cuda_source_compiles_standalone(source, tmp_path):
    """Each .cu builds with nvcc alone (no torch headers) for Ampere (sm_80) and Hopper (sm_90)."""
    cmd = [NVCC, "-c", "-O3", "--fmad=false", "-I", str(SOURCE_DIR / "include"),
           "-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_90,code=sm_90",
           str(SOURCE_DIR / source), "-o", str(tmp_path / "out.o")]
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "out.o").stat().st_size > 0


def test_a_second_checkout_reuses_the_cached_build(tmp_path):
    """Another copy of the same sources (a CI clone, a worktree) loads the cached library as it is:
    built from the package's own folder, ninja rebuilt it (~30 s) whenever the path changed."""
    from nrconvert.kernels import build_extension

    lib = build_extension(verbose=False)
    before = lib.stat().st_mtime_ns
    shutil.copytree(SOURCE_DIR.parent, tmp_path / "nrconvert", ignore=shutil.ignore_patterns("__pycache__"))
    probe = ("from nrconvert.kernels import backend, loader; import nrconvert, json; "
             "print(json.dumps({'backend': backend('cpu'), 'lib': str(loader._state.library), "
             "'pkg': nrconvert.__file__}))")
    rep = _report(_run({"PYTHONPATH": str(tmp_path)}, "-c", probe))
    assert rep["pkg"].startswith(str(tmp_path)), rep  # the copy ran, not the installed package
    assert rep["backend"] == "cpu-ext"
    assert rep["lib"] == str(lib)
    assert lib.stat().st_mtime_ns == before, "the second checkout rebuilt the library"
