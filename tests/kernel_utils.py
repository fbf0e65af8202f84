"""Shared by the kernel tests: the device parametrisation and the "compiled kernels must run" check.

Parity tests compare the compiled kernels with their pure-torch references, so they must fail, not
skip, when the extension does not build: a skip would hide a broken build. Only an explicit
NRCONVERT_KERNELS=torch (nothing compiled to compare) or a missing GPU skips, visibly.
"""
from __future__ import annotations

import os

import pytest
import torch
from nrconvert.kernels import backend
from nrconvert.kernels.loader import unavailable_reason

NO_GPU = "no CUDA GPU on this machine (GPU parity runs where one is present)"

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_GPU)]),
]

# @devices on a test taking a `device` argument runs it on the CPU and, where present, on CUDA.
devices = pytest.mark.parametrize("device", DEVICES)


def require_ext(device: str) -> None:
    """Asserts the compiled kernels run on `device` (skips only under NRCONVERT_KERNELS=torch)."""
    if os.environ.get("NRCONVERT_KERNELS", "").strip().lower() == "torch":
        pytest.skip("NRCONVERT_KERNELS=torch: no compiled kernels to compare")
    got = backend(device)
    assert got == f"{device}-ext", f"compiled kernels unavailable on {device}: {unavailable_reason()}"
