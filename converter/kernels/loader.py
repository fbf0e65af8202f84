"""Just-in-time build of the C++/CUDA kernels, with a pure-torch fallback.

Why JIT and not a compiled wheel: users bring their own torch (CPU or any CUDA), and an extension
must be built against that exact torch. The sources ship as package data; the first use builds
them once into a cache folder keyed by everything the binary depends on (sources, torch, Python,
compiler, CPU features because of `-march=native`, GPU architectures), so a changed source or a
different machine sharing the home folder never loads a stale or illegal binary.

Why a fallback and not an error: a missing compiler must not stop a conversion, only slow it down.
The user gets one warning naming the reason and the command that shows the build log.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import platform
import shutil
import sys
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import DependencyError

log = logging.getLogger("nrconvert")

SOURCE_DIR = Path(__file__).resolve().parent.parent / "cuda_ext"
EXT_NAME = "nrconvert_kernels"
CFLAGS = ["-O3", "-march=native", "-fopenmp", "-ffp-contract=off"]
CUDA_FLAGS = ["-O3", "--fmad=false", "-DNRC_WITH_CUDA"]
LDFLAGS = ["-fopenmp"]
FAILED_MARKER = "failed.txt"
BUILD_LOG = "build.log"


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    tried: bool = False
    library: Path | None = None
    with_cuda: bool = False
    reason: str = ""  # why the extension (or its CUDA part) is not used
    warned: set[str] = field(default_factory=set)
    logged: set[tuple[str, str]] = field(default_factory=set)
    reference_depth: int = 0


_state = _State()


def _mode() -> str:
    mode = os.environ.get("NRCONVERT_KERNELS", "auto").strip().lower() or "auto"
    if mode not in ("auto", "ext", "torch"):
        raise DependencyError(f"NRCONVERT_KERNELS must be auto, ext or torch, got {mode!r}")
    return mode


def _cxx() -> str | None:
    return shutil.which(os.environ.get("CXX", "c++"))


def _nvcc() -> str | None:
    from torch.utils.cpp_extension import CUDA_HOME

    if CUDA_HOME and (Path(CUDA_HOME) / "bin" / "nvcc").exists():
        return str(Path(CUDA_HOME) / "bin" / "nvcc")
    return shutil.which("nvcc")


def _ensure_ninja() -> bool:
    """Puts a ninja on PATH: pip's `ninja` lands in the venv's bin, which is off PATH without activation."""
    if shutil.which("ninja"):
        return True
    dirs = [Path(sys.executable).parent]
    with contextlib.suppress(ImportError):
        import ninja

        dirs.insert(0, Path(ninja.BIN_DIR))
    for d in dirs:
        if (d / "ninja").exists():
            os.environ["PATH"] = f"{d}{os.pathsep}{os.environ.get('PATH', '')}"
            return True
    return False


def _cuda_archs() -> list[str]:
    caps = {torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}
    return [f"{major}{minor}" for major, minor in sorted(caps)]


def _cpu_flags() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    return platform.processor()


def _sources(with_cuda: bool) -> list[Path]:
    files = sorted(SOURCE_DIR.glob("*.cpp"))
    if with_cuda:
        files += sorted(SOURCE_DIR.glob("*.cu"))
    return files


def _cache_key(sources: list[Path], with_cuda: bool) -> str:
    h = hashlib.sha256()
    for path in sources + sorted((SOURCE_DIR / "include").rglob("*.h")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    parts = [torch.__version__, str(torch.version.cuda), sys.version.split()[0], str(_cxx()), _cpu_flags(),
             " ".join(CFLAGS + LDFLAGS), str(with_cuda)]
    if with_cuda:
        parts += [" ".join(CUDA_FLAGS), ",".join(_cuda_archs()), str(_nvcc())]
    h.update("\n".join(parts).encode())
    return h.hexdigest()[:16]


def cache_root() -> Path:
    env = os.environ.get("NRCONVERT_EXT_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "nrconvert" / "ext"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialises builds of one key across processes (parallel test workers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        try:
            import fcntl
        except ImportError:  # not POSIX: torch's own baton file still guards the build
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _missing_tool() -> str | None:
    if _cxx() is None:
        return f"no C++ compiler ({os.environ.get('CXX', 'c++')}) on PATH"
    if not _ensure_ninja():
        return "ninja not found (pip install ninja)"
    return None


def _stage_sources(build_dir: Path, with_cuda: bool) -> tuple[list[Path], Path]:
    """The sources copied once into `build_dir/src` (the key already covers their contents).

    Why: ninja decides what to rebuild from the paths and times in its build file. Built from the
    package's own folder, two checkouts or installs with the same sources (a CI clone, a worktree,
    a second venv) share a key but not a path, so each use from the other one rebuilt everything
    (~30 s on 2 cores) - inside the first training step, where it ate the time budget of an
    opaque capture's first fit. From stable copies, any checkout with these sources reuses it."""
    src = build_dir / "src"
    files = _sources(with_cuda) + sorted((SOURCE_DIR / "include").rglob("*.h"))
    for f in files:
        dest = src / f.relative_to(SOURCE_DIR)
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(dest.name + ".tmp")
            shutil.copyfile(f, tmp)
            tmp.replace(dest)
    return [src / f.name for f in _sources(with_cuda)], src / "include"


def _compile(build_dir: Path, with_cuda: bool, verbose: bool) -> Path:
    """Builds (or reuses) the library in `build_dir` and loads it into this process."""
    from torch.utils.cpp_extension import load

    sources, include = _stage_sources(build_dir, with_cuda)
    if not (build_dir / f"{EXT_NAME}.so").exists():
        log.info("building the C++ kernels into %s (once per install; ~30 s on 2 cores)", build_dir)
    cuda_flags = list(CUDA_FLAGS)
    if with_cuda:
        cuda_flags += [f"-gencode=arch=compute_{a},code=sm_{a}" for a in _cuda_archs()]
    cflags = CFLAGS + (["-DNRC_WITH_CUDA"] if with_cuda else [])
    # torch's own baton is not released when a builder dies; our flock is, so under it a baton is stale
    (build_dir / "lock").unlink(missing_ok=True)
    with warnings.catch_warnings():
        if not verbose:
            warnings.simplefilter("ignore")  # torch's compiler-ABI chatter; our one warning says enough
        path = load(name=EXT_NAME, sources=[str(s) for s in sources], extra_cflags=cflags,
                    extra_cuda_cflags=cuda_flags, extra_ldflags=LDFLAGS,
                    extra_include_paths=[str(include)], build_directory=str(build_dir),
                    verbose=verbose, with_cuda=with_cuda, is_python_module=False)
    return Path(path)


def _build_and_load(verbose: bool, force: bool) -> None:
    """Fills `_state` (library or reason); `force` retries a build that failed before."""
    missing = _missing_tool()
    if missing:
        _state.reason = missing
        return
    with_cuda = torch.cuda.is_available() and _nvcc() is not None
    sources = _sources(with_cuda)
    build_dir = cache_root() / _cache_key(sources, with_cuda)
    build_dir.mkdir(parents=True, exist_ok=True)
    marker = build_dir / FAILED_MARKER
    with _file_lock(build_dir.with_suffix(".lock")):
        if marker.exists() and not force:
            _state.reason = marker.read_text().strip()
            return
        try:
            _state.library = _compile(build_dir, with_cuda, verbose)
        except Exception as exc:  # noqa: BLE001 - any build failure means: fall back
            (build_dir / BUILD_LOG).write_text(str(exc))
            _state.reason = f"build failed, log in {build_dir / BUILD_LOG}"
            marker.write_text(_state.reason)
            return
        marker.unlink(missing_ok=True)
    _state.with_cuda = with_cuda
    if torch.cuda.is_available() and not with_cuda:
        _state.reason = "nvcc not found, CUDA kernels not built"


def _ensure_loaded() -> bool:
    with _state.lock:
        if not _state.tried:
            _state.tried = True
            if _mode() == "torch":
                _state.reason = "NRCONVERT_KERNELS=torch"
            else:
                _build_and_load(verbose=False, force=False)
        if _state.library is None and _mode() == "ext":
            raise DependencyError(f"C++ kernels unavailable ({_state.reason}) and NRCONVERT_KERNELS=ext",
                                  hint="run `nrconvert build-ext` to see the build log")
        return _state.library is not None


def _warn_once(device_type: str) -> None:
    if device_type in _state.warned:
        return
    _state.warned.add(device_type)
    warnings.warn(f"nrconvert: C++ kernels unavailable ({_state.reason}); using the pure-torch reference, "
                  "~10x slower. Run `nrconvert build-ext` to see the build log.", RuntimeWarning, stacklevel=4)


def backend(device: torch.device | str) -> str:
    """'cpu-ext', 'cuda-ext' or 'torch': which implementation runs the kernels for `device`."""
    dev = torch.device(device).type
    if _state.reference_depth > 0 or dev not in ("cpu", "cuda"):
        return "torch"
    ok = _ensure_loaded()
    name = f"{dev}-ext" if ok and (dev == "cpu" or _state.with_cuda) else "torch"
    if name == "torch":
        _warn_once(dev)
    if (dev, name) not in _state.logged:
        _state.logged.add((dev, name))
        log.info("nrconvert kernels on %s: %s", dev, name)
    return name


def available() -> bool:
    """Whether the compiled kernels are loaded (building them on first call)."""
    return _mode() != "torch" and _ensure_loaded()


def build_extension(verbose: bool = True) -> Path:
    """Builds and loads the extension now, whatever NRCONVERT_KERNELS says; returns the library path.

    Raises DependencyError when no compiler or ninja is found or the build fails.
    """
    with _state.lock:
        if _state.library is None:
            _state.tried = True
            _build_and_load(verbose=verbose, force=True)
        if _state.library is None:
            raise DependencyError(f"cannot build the C++ kernels: {_state.reason}",
                                  hint="install a C++ compiler (g++) and ninja, or set CXX")
        return _state.library


def unavailable_reason() -> str:
    """Why the compiled kernels (or their CUDA part) are not used; empty when they all are."""
    return _state.reason


@contextlib.contextmanager
def use_reference() -> Iterator[None]:
    """Runs the pure-torch reference inside the block (benchmarks, parity tests), without warning."""
    _state.reference_depth += 1
    try:
        yield
    finally:
        _state.reference_depth -= 1
