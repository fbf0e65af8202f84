"""Failure classes with distinct exit codes.

Farms and batch scripts branch on the exit code, so every failure the user can act on has its own
class; the message always names the file (and field) at fault and what to do about it.

Exit codes 2-12 are permanent: the same input fails the same way, so retrying wastes a farm slot.
Exit codes 75-79 (75 is sysexits' EX_TEMPFAIL) are retryable: the machine, not the input, was at
fault (disk full, out of memory, the job was stopped), and `--resume` continues from the last
checkpoint. The full table, with messages, is docs/errors.md.
"""
from __future__ import annotations


class NrcError(Exception):
    """Base of every error the CLI reports without a traceback."""

    exit_code = 1
    retryable = False  # farms and `nrconvert batch` retry only retryable failures

    def __init__(self, message: str, *, path: str | None = None, hint: str | None = None):
        self.path = path
        self.hint = hint
        text = f"{path}: {message}" if path else message
        if hint:
            text += f"\n  hint: {hint}"
        super().__init__(text)


class UsageError(NrcError):
    """Bad command-line arguments or options."""

    exit_code = 2


class CaptureError(NrcError):
    """The capture (images, poses, intrinsics) is missing, malformed or unsupported."""

    exit_code = 3


class TrainingError(NrcError):
    """Training diverged (NaN/Inf) or produced an empty field."""

    exit_code = 4


class ExtractionError(NrcError):
    """No usable surface could be extracted from the trained field."""

    exit_code = 5


class OutputError(NrcError):
    """The output cannot be written (permissions, disk full, bad path)."""

    exit_code = 6


class ValidationError(NrcError):
    """A GLB we wrote failed the Khronos glTF-Validator: a bug in nrconvert, please report it."""

    exit_code = 7


class DependencyError(NrcError):
    """An optional dependency (bpy, node, gltf-validator) is missing for the asked command."""

    exit_code = 8


class AssetError(NrcError):
    """An input GLB (for `nrconvert render`) is missing, truncated or malformed."""

    exit_code = 9


class SfmError(CaptureError):
    """Structure-from-motion could not pose enough of the photos."""

    exit_code = 10


class BoundsError(CaptureError):
    """The cameras or points give no usable object bounds (all cameras in one spot, no overlap)."""

    exit_code = 11


class BlockError(NrcError):
    """A block unit command needs blocks that are not finished (nrconvert train/bake/merge --block):
    run those first. Permanent: re-running this command alone cannot fix it."""

    exit_code = 12


class DiskFullError(OutputError):
    """The disk (or quota) filled up while writing: free space and re-run with --resume."""

    exit_code = 75
    retryable = True


class OutOfMemoryError(NrcError):
    """Out of memory even at the smallest batch size: retry on a bigger machine or a smaller preset."""

    exit_code = 76
    retryable = True


class AtlasError(NrcError):
    """xatlas crashed or stalled twice on the same mesh: the machine (or a bug), not the input."""

    exit_code = 77
    retryable = True


class InterruptedRun(NrcError):
    """The run was stopped (SIGTERM from a farm or SIGINT from Ctrl-C); finished work is kept."""

    exit_code = 79
    retryable = True


RETRYABLE_EXIT_CODES = frozenset({75, 76, 77, 79, 137, 143})  # 137/143: killed by SIGKILL / SIGTERM


def os_error(exc: OSError, path: str, what: str = "the output") -> NrcError:
    """The right class for an OSError while writing: a full disk is retryable, the rest is not."""
    import errno

    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(f"disk full while writing {what}", path=path,
                             hint="free some space (or pick another --workdir / -o), then re-run with --resume")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError("output folder is not writable", path=path,
                           hint="check the folder's permissions or choose another output path")
    return OutputError(f"cannot write {what}: {exc.strerror or exc}", path=path)
