"""Failpoints: make rare failures happen on demand, so their handling is tested, not hoped for.

Disk-full, out-of-memory and diverging training cannot be produced reliably on a test machine, so
the code that handles them calls `fire(name, where)` at the spot where the real failure would
surface, and the environment variable NRCONVERT_FAULTS arms it (etcd/TiKV-style failpoints):

    NRCONVERT_FAULTS="nan_loss@120"      the training loss is NaN once, at step 120
    NRCONVERT_FAULTS="nan_loss@120+"     ... at every step from 120 on
    NRCONVERT_FAULTS="oom@5+,enospc@glb" several at once

Unset (every user run), `fire` is one dict lookup. Names in use: nan_loss@STEP, oom@STEP (training
step runs out of memory), enospc@glb|checkpoint|work (the disk fills while writing that file),
xatlas_hang@ATTEMPT (the UV atlas child stalls).
"""
from __future__ import annotations

import errno
import os
from functools import lru_cache

ENV = "NRCONVERT_FAULTS"
_fired: set[str] = set()


@lru_cache(maxsize=8)
def _parse(spec: str) -> dict[str, tuple[str, bool]]:
    out = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, where = item.partition("@")
        out[name] = (where.rstrip("+"), where.endswith("+"))
    return out


def fire(name: str, where: object = "") -> bool:
    """True where the armed failpoint `name` matches `where` (a step number or a file kind)."""
    spec = os.environ.get(ENV)
    if not spec:
        return False
    armed = _parse(spec).get(name)
    if armed is None:
        return False
    at, sticky = armed
    if sticky and isinstance(where, int) and at.isdigit():
        return where >= int(at)
    key = f"{name}@{where}"
    if at not in ("", str(where)) or key in _fired:
        return False
    _fired.add(key)
    return True


def disk_full(where: str, path: str) -> None:
    """Raise the OSError a full disk gives, where `enospc@where` is armed."""
    if fire("enospc", where):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
