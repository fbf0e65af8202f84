"""Hot kernels (hash-grid encoding, compositing, ...) from the C++/CUDA extension or a torch reference.

Each op module holds the public function, which dispatches on `backend(device)`, and its pure-torch
reference `*_ref`, which is also the oracle of the parity tests.
"""
from .loader import available, backend, build_extension, use_reference

__all__ = ["available", "backend", "build_extension", "use_reference"]
