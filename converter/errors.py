"""Failure classes with distinct exit codes.

Farms and batch scripts branch on the exit code, so every failure the user can act on has its own
class; the message always names the file (and field) at fault and what to do about it.
"""
from __future__ import annotations


class NrcError(Exception):
    """Base of every error the CLI reports without a traceback."""

    exit_code = 1
    retryable = False

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
