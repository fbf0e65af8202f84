"""Safe loading: nothing nrconvert reads (inputs, work files) can run code when loaded."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from nrconvert.checkpoint import load_field_state
from nrconvert.errors import OutputError

ROOT = Path(__file__).resolve().parents[1]
UNSAFE_MODULES = {"pickle", "cPickle", "dill", "joblib", "marshal", "shelve"}


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            yield node, node.func.attr, ast.unparse(node.func.value)


def _keyword(call: ast.Call, name: str):
    return next((ast.literal_eval(k.value) for k in call.keywords if k.arg == name), None)


@pytest.mark.parametrize("folder", ["converter", "addon"])
def test_no_pickle_loading_in_the_code(folder: str) -> None:
    problems = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            problems += [f"{path}:{node.lineno} imports {n}" for n in names if n.split(".")[0] in UNSAFE_MODULES]
        for call, attr, owner in _calls(tree):
            if attr == "load" and owner == "torch" and _keyword(call, "weights_only") is not True:
                problems.append(f"{path}:{call.lineno} torch.load without weights_only=True")
            if attr == "load" and owner in ("np", "numpy") and _keyword(call, "allow_pickle") is True:
                problems.append(f"{path}:{call.lineno} np.load(allow_pickle=True)")
    assert problems == []


class Payload:
    """What a tampered checkpoint would smuggle in: loading must refuse it, not build it."""

    def __reduce__(self):
        return (Path.touch, (Path("/tmp/nrconvert-pwned"),))


def test_tampered_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "field.partial.pt"
    torch.save({"field": {}, "history": "[]", "evil": Payload()}, path)
    Path("/tmp/nrconvert-pwned").unlink(missing_ok=True)
    with pytest.raises(OutputError, match="unreadable checkpoint") as info:
        load_field_state(path)
    assert str(path) in str(info.value)
    assert not Path("/tmp/nrconvert-pwned").exists()


def test_torn_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "field.pt"
    torch.save({"a": torch.zeros(1000)}, path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(OutputError, match="--redo train"):
        load_field_state(path)
