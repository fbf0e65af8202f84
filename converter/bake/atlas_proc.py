"""xatlas run in a child process, so that its thread pool can never hang the converter.

Why a child: xatlas's thread-pool destructor (`xatlas::Destroy`) can lose its shutdown wake-up.
It sets a worker's flag and notifies its condition variable without taking the worker's mutex, so
a worker that has just found the flag unset and is about to sleep misses the notification, and the
destructor's `join` then waits for ever. It happened once in a CI run on 2 cores (py-spy: the main
thread in std::thread::join <- TaskScheduler::~TaskScheduler <- xatlas::Destroy), and no signal
or Python-level timeout can interrupt a native join. The child sends its atlas back and leaves
with `os._exit`, so that destructor never runs at all; a timeout and a retry guard against any
other stall. The cost is one interpreter start with numpy (~0.2 s) per unwrap, against seconds
of charting.

Protocol: the parent writes an .npz to the child's stdin (per piece i: `v{i}`, `f{i}`, optional
`n{i}`; `size`, `padding`), the child writes one back to stdout (`vmap{i}`, `faces{i}`, `uvs{i}`).
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
import time

import numpy as np

from ..errors import AtlasError, ExtractionError
from ..faults import fire

REFUSED = 3  # the child's exit code when xatlas raised on the mesh: deterministic, not retried

Piece = tuple[np.ndarray, np.ndarray, np.ndarray | None]  # vertices, faces, normals (or None)
Chart = tuple[np.ndarray, np.ndarray, np.ndarray]  # vertex map, faces, uvs (xatlas convention)


def timeout_for(n_faces: int) -> float:
    """Generous: balanced's 80k-triangle LOD0 charts in ~8 s and 200k in ~60 s on 2 cores."""
    return 120.0 + 2e-3 * n_faces


def generate(pieces: list[Piece], size: int, padding: int, *, timeout_s: float | None = None,
             attempts: int = 2) -> list[Chart]:
    """Chart and pack `pieces` as one atlas in a child process; retry once on a stall or a native
    crash (a signal: racy, like the stall), never when xatlas raised on the mesh (it would again)."""
    payload = _pack(pieces, size, padding)
    limit = timeout_s if timeout_s is not None else timeout_for(sum(len(f) for _, f, _ in pieces))
    why = ""
    for attempt in range(1, attempts + 1):
        try:
            done = subprocess.run([sys.executable, "-m", __name__, str(attempt)], input=payload,
                                  capture_output=True, timeout=limit, check=False)
        except subprocess.TimeoutExpired:
            why = f"stalled for {limit:.0f} s"
            continue
        if done.returncode == 0:
            return _unpack_charts(done.stdout, len(pieces))
        err = done.stderr.decode(errors="replace").strip()[-500:]
        if done.returncode == REFUSED:
            raise ExtractionError(f"the UV atlas (xatlas) refused the mesh: {err}",
                                  hint="this is a bug in the extracted mesh: please report it with the log")
        why = f"exited with {done.returncode}: {err}"
    raise AtlasError(f"the UV atlas (xatlas) {why}, {attempts} times",
                     hint="re-run with --resume; if it keeps failing, please report it with the log")


def _pack(pieces: list[Piece], size: int, padding: int) -> bytes:
    arrays: dict[str, np.ndarray] = {"size": np.int64(size), "padding": np.int64(padding)}
    for i, (v, f, n) in enumerate(pieces):
        arrays[f"v{i}"] = np.ascontiguousarray(v, np.float32)
        arrays[f"f{i}"] = np.ascontiguousarray(f, np.uint32)
        if n is not None:
            arrays[f"n{i}"] = np.ascontiguousarray(n, np.float32)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _unpack_charts(data: bytes, n: int) -> list[Chart]:
    with np.load(io.BytesIO(data)) as z:
        return [(z[f"vmap{i}"], z[f"faces{i}"], z[f"uvs{i}"]) for i in range(n)]


def _chart(data: bytes) -> bytes:
    """The child's work: the same options the converter has always used (see bake.uv)."""
    import xatlas

    with np.load(io.BytesIO(data)) as z:
        n = sum(1 for k in z.files if k.startswith("v"))
        atlas = xatlas.Atlas()
        for i in range(n):
            atlas.add_mesh(z[f"v{i}"], z[f"f{i}"], z[f"n{i}"] if f"n{i}" in z.files else None)
        pack = xatlas.PackOptions()
        pack.resolution = int(z["size"])
        pack.padding = int(z["padding"])
    pack.bilinear = True
    pack.blockAlign = True
    charts = xatlas.ChartOptions()
    # The seeding/growing refinement pass costs ~20 % of the unwrap at 200k triangles (72 -> 58 s)
    # for the same chart count and packing efficiency (6832 vs 6890 charts, 84 % utilisation).
    charts.max_iterations = 0
    atlas.generate(charts, pack)
    out = {}
    for i in range(n):
        vmap, faces, uvs = atlas[i] if hasattr(atlas, "__getitem__") else atlas.get_mesh(i)
        out[f"vmap{i}"], out[f"faces{i}"], out[f"uvs{i}"] = vmap, faces, uvs
    buf = io.BytesIO()
    np.savez(buf, **out)
    return buf.getvalue()


def _main() -> None:
    attempt = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    if fire("xatlas_hang", attempt):  # tests: this attempt stalls as the lost wake-up would
        time.sleep(3600)
    try:
        result = _chart(sys.stdin.buffer.read())
    except Exception as exc:  # noqa: BLE001 - any Python-level refusal: tell the parent not to retry
        sys.stderr.write(f"{type(exc).__name__}: {exc}\n")
        sys.stderr.flush()
        os._exit(REFUSED)
    sys.stdout.buffer.write(result)
    sys.stdout.buffer.flush()
    os._exit(0)  # never run xatlas's destructor (see the module docstring)


if __name__ == "__main__":
    _main()
