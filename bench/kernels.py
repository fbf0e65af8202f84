"""Kernel benchmark: the compiled extension against the pure-torch reference, side by side.

Same process, same inputs, same thread count: only the implementation differs, so the ratio is
what the extension buys on this machine. Absolute numbers are only meaningful from a quiet machine
(the load average is recorded with the results) or from a GPU run.

    python bench/kernels.py                  # CPU, 2 threads, instant-ngp sizes
    python bench/kernels.py --device cuda    # GPU run
    python bench/kernels.py --quick          # small sizes, a smoke test of the script itself

Writes bench/results/kernels-<date>[-cuda].json and prints a table.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import gc
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from nrconvert.fields.hashgrid import HashGrid, HashGridConfig
from nrconvert.kernels import backend, use_reference
from nrconvert.kernels.composite import composite, composite_ref
from nrconvert.kernels.hashgrid import hash_encode, hash_encode_ref
from torch import nn

RESULTS = Path(__file__).resolve().parent / "results"


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _timed(fn: Callable[[], object], device: str) -> float:
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def _release_memory() -> None:
    """Hands freed heap back to the OS between blocks, so one implementation's temporaries (the
    reference allocates ~1 GB per training step) do not change the heap the other one runs in."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def _block(fn: Callable[[], object], args) -> float:
    """Median seconds of `args.reps` runs after `args.warmup` runs."""
    _release_memory()
    for _ in range(args.warmup):
        fn()
    _sync(args.device)
    return statistics.median(_timed(fn, args.device) for _ in range(args.reps))


def compare(name: str, items: int, unit: str, ext_fn, ref_fn, args) -> dict:
    """One row: items/s of both implementations (the reference under `use_reference`).

    Each runs as its own block (warm-up, then the timed runs), as in real use: measured on this
    machine, interleaving single runs of the two made the extension's training step up to 5x slower
    (the reference's allocations leave the heap in a state that page-faults the extension's).
    """
    row = {"op": name, "items": items, "unit": unit}
    try:
        ext = _block(ext_fn, args)
        with use_reference():
            ref = _block(ref_fn, args)
    except Exception as exc:  # noqa: BLE001 - a broken op must not hide the other rows
        row["error"] = f"{type(exc).__name__}: {exc}"
        print(f"{name:28s} FAILED: {row['error']}")
        return row
    row.update(ext_per_s=items / ext, ref_per_s=items / ref, ratio=ref / ext, ext_ms=ext * 1e3, ref_ms=ref * 1e3)
    print(f"{name:28s} {items / ext:14,.0f} {items / ref:14,.0f} {unit + '/s':>10s} {ref / ext:8.1f}x")
    return row


def bench_encoding(args, gen) -> list[dict]:
    grid = HashGrid(HashGridConfig(levels=16, features=2, log2_table=args.log2_table)).to(args.device)
    n = args.batch
    x = torch.rand(n, 3, generator=gen).to(args.device)
    go = torch.randn(n, grid.out_dim, generator=gen).to(args.device)
    table, res, offs = grid.table, grid.resolutions, grid.offsets

    def fwd(fn):
        with torch.no_grad():
            fn(x, table, res, offs)

    def fwd_bwd(fn):
        table.grad = None
        fn(x, table, res, offs).backward(go)

    return [compare("hash_encode fwd", n, "pts", lambda: fwd(hash_encode), lambda: fwd(hash_encode_ref), args),
            compare("hash_encode fwd+bwd", n, "pts", lambda: fwd_bwd(hash_encode),
                    lambda: fwd_bwd(hash_encode_ref), args)]


def bench_composite(args, gen) -> list[dict]:
    rays, per_ray = args.batch // 64, 64
    s = rays * per_ray
    offsets = (torch.arange(rays + 1) * per_ray).to(args.device)
    tau = (torch.rand(s, generator=gen) * 0.1).to(args.device).requires_grad_()
    rgb = torch.rand(s, 3, generator=gen).to(args.device).requires_grad_()
    t = torch.rand(s, generator=gen).to(args.device)
    ups = [torch.randn(rays, 3, generator=gen).to(args.device), torch.randn(rays, generator=gen).to(args.device)]

    def step(fn):
        tau.grad = rgb.grad = None
        c, o, _ = fn(tau, rgb, t, offsets, 1e-3)
        ((c * ups[0]).sum() + (o * ups[1]).sum()).backward()

    return [compare("composite fwd+bwd", s, "samples", lambda: step(composite), lambda: step(composite_ref), args)]


def bench_march(args, gen) -> list[dict]:
    try:
        from nrconvert.kernels.march import march_rays, march_rays_ref
    except ImportError:
        return []
    rays = args.batch // 64
    o = (torch.rand(rays, 3, generator=gen) * 0.2 - 0.6).to(args.device)
    target = torch.rand(rays, 3, generator=gen) * 0.5 + 0.25
    d = torch.nn.functional.normalize(target.to(args.device) - o, dim=-1)
    near, far = torch.zeros(rays, device=args.device), torch.full((rays,), 3.0, device=args.device)
    occ = (torch.rand(128, 128, 128, generator=gen) < 0.2).to(args.device)
    call = (o, d, near, far, occ, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 3 ** 0.5 / 1024, 2048)
    return [compare("march_rays", rays, "rays", lambda: march_rays(*call), lambda: march_rays_ref(*call), args)]


def _sphere(n_lat: int, n_lon: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A lat-long sphere projected to pixels (x, y, depth) covering most of a size x size image."""
    th = torch.linspace(0, torch.pi, n_lat + 1)[:, None]
    ph = torch.linspace(0, 2 * torch.pi, n_lon + 1)[None, :]
    shape = (n_lat + 1, n_lon + 1)
    p = torch.stack([(th.sin() * ph.cos()).expand(shape), (th.sin() * ph.sin()).expand(shape),
                     th.cos().expand(shape)], -1).reshape(-1, 3)
    pix = torch.stack([(p[:, 0] * 0.45 + 0.5) * size, (p[:, 1] * 0.45 + 0.5) * size, p[:, 2] + 3.0], -1)
    i, j = torch.meshgrid(torch.arange(n_lat), torch.arange(n_lon), indexing="ij")
    a = (i * (n_lon + 1) + j).reshape(-1)
    b, c, e = a + 1, a + n_lon + 1, a + n_lon + 2
    faces = torch.cat([torch.stack([a, c, b], -1), torch.stack([b, c, e], -1)])
    return pix, faces


def bench_raster(args, gen) -> list[dict]:
    try:
        from nrconvert.kernels.raster import (
            rasterize,
            rasterize_ref,
            rasterize_uv,
            rasterize_uv_ref,
        )
    except ImportError:
        return []
    size = 256 if args.quick else 1024
    pix, faces = _sphere(64, 128, size)
    pix, faces = pix.to(args.device), faces.to(args.device)
    uv = pix[:, :2].contiguous()
    rows = [compare("rasterize", size * size, "px", lambda: rasterize(pix, faces, size, size),
                    lambda: rasterize_ref(pix, faces, size, size), args)]
    rows.append(compare("rasterize_uv", size * size, "texels", lambda: rasterize_uv(uv, faces, size, size),
                        lambda: rasterize_uv_ref(uv, faces, size, size), args))
    return rows


class TinyField(nn.Module):
    """instant-ngp-sized NeRF: hash grid, 64-wide 1-hidden-layer density MLP, 64-wide 2-layer colour MLP."""

    def __init__(self, log2_table: int):
        super().__init__()
        self.grid = HashGrid(HashGridConfig(levels=16, features=2, log2_table=log2_table))
        self.density = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 16))
        self.color = nn.Sequential(nn.Linear(15 + 16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3))

    def forward(self, x: torch.Tensor, dir_feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.density(self.grid(x))
        return torch.exp(h[:, 0].clamp(max=15)), torch.sigmoid(self.color(torch.cat([h[:, 1:], dir_feats], -1)))


def bench_training_step(args, gen) -> list[dict]:
    n = args.train_batch
    model = TinyField(args.log2_table).to(args.device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, eps=1e-15, fused=True)
    x = torch.rand(n, 3, generator=gen).to(args.device)
    dirs = torch.randn(n, 16, generator=gen).to(args.device)
    target = torch.rand(n, 3, generator=gen).to(args.device)

    def step():
        opt.zero_grad(set_to_none=True)
        sigma, rgb = model(x, dirs)
        loss = ((rgb - target) ** 2).mean() + 1e-4 * sigma.mean()
        loss.backward()
        opt.step()

    return [compare("training step (fwd+bwd+Adam)", n, "samples", step, step, args)]


PARTS = {"encode": bench_encoding, "composite": bench_composite, "march": bench_march, "raster": bench_raster,
         "train": bench_training_step}


def _machine(args) -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "backend": backend(args.device),
            "load_avg_before": os.getloadavg()[0]}
    if args.device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    else:
        cpu = [ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")]
        info["cpu"] = cpu[0].split(":", 1)[1].strip() if cpu else platform.processor()
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="small sizes: check the script, not the speed")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--ops", default="encode,composite,march,raster,train",
                    help="comma-separated subset of: " + ",".join(PARTS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.batch, args.train_batch, args.log2_table = (1 << 12, 1 << 10, 12) if args.quick else (1 << 18, 1 << 16, 19)
    gen = torch.Generator().manual_seed(0)
    machine = _machine(args)
    if machine["backend"] == "torch":
        raise SystemExit(f"compiled kernels unavailable on {args.device}: run `nrconvert build-ext`")
    print(f"{'op':28s} {'extension':>14s} {'reference':>14s} {'unit':>10s} {'ratio':>9s}")
    rows = []
    for key in args.ops.split(","):
        rows += PARTS[key.strip()](args, gen)
    machine["load_avg_after"] = os.getloadavg()[0]
    stamp = dt.date.today().isoformat()
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = ("-cuda" if args.device == "cuda" else "") + ("-quick" if args.quick else "")
    suffix += "" if args.ops == ap.get_default("ops") else "-" + args.ops.replace(",", "-")
    path = args.out / f"kernels-{stamp}{suffix}.json"
    config = {"batch": args.batch, "train_batch": args.train_batch, "log2_table": args.log2_table,
              "reps": args.reps, "warmup": args.warmup}
    path.write_text(json.dumps({"date": stamp, "machine": machine, "config": config, "rows": rows}, indent=2))
    print(f"load average {machine['load_avg_before']:.2f} -> {machine['load_avg_after']:.2f}; wrote {path}")


if __name__ == "__main__":
    main()
