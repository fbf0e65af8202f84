"""Khronos glTF-Validator wrapper: every GLB we ship must pass it with zero errors.

The validator is only published as a JS package (npm `gltf-validator`), so this runs Node on a
small ES module shipped beside this file (`validate.mjs`) and parses the JSON report it prints.
The package is found via `NRCONVERT_GLTF_VALIDATOR` (a node_modules folder), else the repo's
`tools/validator/node_modules`, else npm's global root.
"""
from __future__ import annotations

import json
import re
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DependencyError, UsageError, ValidationError

ENV_PACKAGE = "NRCONVERT_GLTF_VALIDATOR"
ENV_NODE = "NRCONVERT_NODE"
SCRIPT = Path(__file__).with_name("validate.mjs")
REPO_NODE_MODULES = Path(__file__).resolve().parents[2] / "tools" / "validator" / "node_modules"
INSTALL_HINT = ("cd tools/validator && npm install   (or npm install -g gltf-validator, or set "
                f"{ENV_PACKAGE} to a node_modules folder holding gltf-validator)")
SEVERITIES = {0: "error", 1: "warning", 2: "info", 3: "hint"}
# Our own extensions (NRC_*) are unknown to the validator: DESIGN.md §4 accepts these warnings.
DEFAULT_ALLOWED_WARNINGS = ("UNSUPPORTED_EXTENSION", "UNRESERVED_EXTENSION_PREFIX")
# The `captured` material is unlit *and* carries NRC_neural_material (DESIGN.md §4): the validator
# flags any extension beside KHR_materials_unlit as possibly incompatible. Only that pairing is
# accepted, at that exact place.
_UNLIT_PAIR = re.compile(r"^/materials/\d+/extensions/KHR_materials_unlit$")


@dataclass
class ValidatorReport:
    """What the validator said about one file; `messages` are dicts with code, message, pointer,
    severity ("error" | "warning" | "info" | "hint")."""

    path: Path
    errors: int
    warnings: int
    infos: int
    hints: int = 0
    messages: list[dict] = field(default_factory=list)
    validator_version: str = ""
    raw: dict = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.errors == 0

    def codes(self, severity: str) -> list[str]:
        """Issue codes of one severity, in report order (duplicates kept)."""
        return [m["code"] for m in self.messages if m["severity"] == severity]

    def format(self, severities: tuple[str, ...] = ("error", "warning")) -> str:
        """One line per message of the given severities, for exceptions and logs."""
        lines = [f"{m['severity']}: {m['code']} at {m['pointer'] or '/'}: {m['message']}"
                 for m in self.messages if m["severity"] in severities]
        return "\n".join(lines)


def _has_package(node_modules: Path) -> bool:
    return (node_modules / "gltf-validator" / "package.json").is_file()


def _npm_global_root() -> Path | None:
    npm = shutil.which("npm")
    if npm is None:
        return None
    try:
        out = subprocess.run([npm, "root", "-g"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return Path(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else None


def find_validator_package() -> Path:
    """The node_modules folder that holds `gltf-validator`, or DependencyError with a hint."""
    env = os.environ.get(ENV_PACKAGE)
    if env:
        given = Path(env).expanduser()
        for candidate in (given, given.parent):  # accept the package folder itself too
            if _has_package(candidate):
                return candidate
        raise DependencyError(f"{ENV_PACKAGE} does not point to a node_modules folder holding "
                              "gltf-validator", path=str(given), hint=INSTALL_HINT)
    if _has_package(REPO_NODE_MODULES):
        return REPO_NODE_MODULES
    root = _npm_global_root()
    if root is not None and _has_package(root):
        return root
    raise DependencyError("the Khronos glTF-Validator (npm package gltf-validator) is not "
                          "installed", hint=INSTALL_HINT)


def find_node() -> str:
    """Path of the Node.js executable (`NRCONVERT_NODE` or `node` on PATH)."""
    given = os.environ.get(ENV_NODE)
    if given and not (shutil.which(given) or Path(given).is_file()):
        raise DependencyError(f"{ENV_NODE} names no Node.js executable", path=given,
                              hint="point it at `node`, or unset it to use the one on PATH")
    node = given or shutil.which("node")
    if not node:
        raise DependencyError("Node.js (`node`) is needed to run the glTF-Validator but is not "
                              "on PATH", hint="install Node.js >= 18, then " + INSTALL_HINT)
    return node


def check_validator_ready() -> None:
    """Node and the validator package are both there: a conversion checks this before it trains,
    not after (a GPU box without Node.js lost a whole conversion at its last step)."""
    try:
        find_node()
        find_validator_package()
    except DependencyError as exc:
        raise DependencyError(str(exc).split("\n")[0], hint=(exc.hint or INSTALL_HINT)
                              + "; or pass --no-validate to write the GLB unchecked") from exc


def validate_glb(path: Path, *, timeout_s: float = 600.0) -> ValidatorReport:
    """Validate a .glb (or .gltf) file with the Khronos validator and return its report."""
    path = Path(path)
    if not path.is_file():
        raise UsageError("no such file to validate", path=str(path))
    if not SCRIPT.is_file():  # package data lost by a packaging bug
        raise DependencyError("validate.mjs is missing from the installed package",
                              path=str(SCRIPT), hint="reinstall nrconvert; please report it")
    cmd = [find_node(), str(SCRIPT), str(find_validator_package()), str(path.resolve())]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise ValidationError(f"glTF-Validator took longer than {timeout_s:.0f} s",
                              path=str(path)) from exc
    except OSError as exc:
        raise DependencyError(f"cannot run node: {exc}", hint=INSTALL_HINT) from exc
    if proc.returncode == 3:
        raise DependencyError(proc.stderr.strip(), hint=INSTALL_HINT)
    if proc.returncode == 5:  # not recognisable as glTF/GLB at all
        return _unrecognised(path, proc.stderr.strip())
    if proc.returncode != 0:
        raise ValidationError(f"glTF-Validator failed (exit {proc.returncode}): "
                              f"{proc.stderr.strip()}", path=str(path))
    return parse_report(path, json.loads(proc.stdout))


def parse_report(path: Path, raw: dict) -> ValidatorReport:
    """ValidatorReport from the validator's JSON report object."""
    issues = raw.get("issues", {})
    messages = [{"code": m.get("code", ""), "message": m.get("message", ""),
                 "pointer": m.get("pointer", ""),
                 "severity": SEVERITIES.get(m.get("severity"), str(m.get("severity")))}
                for m in issues.get("messages", [])]
    return ValidatorReport(path=Path(path), errors=int(issues.get("numErrors", 0)),
                           warnings=int(issues.get("numWarnings", 0)),
                           infos=int(issues.get("numInfos", 0)),
                           hints=int(issues.get("numHints", 0)), messages=messages,
                           validator_version=str(raw.get("validatorVersion", "")), raw=raw)


def _unrecognised(path: Path, detail: str) -> ValidatorReport:
    msg = {"code": "UNRECOGNIZED_FORMAT", "message": detail or "not a glTF or GLB file",
           "pointer": "", "severity": "error"}
    return ValidatorReport(path=path, errors=1, warnings=0, infos=0, messages=[msg])


def _unlit_pair(message: dict) -> bool:
    return message["code"] == "MULTIPLE_EXTENSIONS" and bool(_UNLIT_PAIR.match(message.get("pointer") or ""))


def assert_valid(path: Path, allow_warnings: tuple[str, ...] = DEFAULT_ALLOWED_WARNINGS
                 ) -> ValidatorReport:
    """Validate and raise ValidationError listing every error and every warning whose code is
    not in `allow_warnings`; returns the report when the file passes."""
    report = validate_glb(path)
    bad = [m for m in report.messages if m["severity"] == "error"
           or (m["severity"] == "warning" and m["code"] not in allow_warnings and not _unlit_pair(m))]
    if bad:
        lines = "\n".join(f"  {m['severity']}: {m['code']} at {m['pointer'] or '/'}: "
                          f"{m['message']}" for m in bad)
        raise ValidationError(f"glTF-Validator: {report.errors} error(s), {report.warnings} "
                              f"warning(s)\n{lines}", path=str(path),
                              hint="this is a bug in nrconvert; please report it with the file")
    return report
