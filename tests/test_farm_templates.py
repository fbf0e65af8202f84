"""The farm job templates (farm/) run for real: the OpenJD job template through a small local
executor (parameter spaces expanded, format strings substituted, steps in dependency order), the
Flamenco job type compiled under node with a stub `author` API, its task commands run in
dependency order. Both must leave a Khronos-valid GLB."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nrconvert.export.reader import read_glb
from nrconvert.export.validate import validate_glb

from .street_scene import write_street

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
OPENJD = ROOT / "farm" / "deadline" / "nrconvert" / "template.yaml"
FLAMENCO = ROOT / "farm" / "flamenco" / "nrconvert-blocks.js"
SETTINGS = "steps=160,neural_steps=60,pbr_steps=60,texture_size=128"
NRCONVERT = str(Path(sys.executable).with_name("nrconvert"))


# --- a tiny OpenJD executor: enough of the 2023-09 template to run ours ---------------------------

def _substitute(text: str, symbols: dict[str, str]) -> str:
    def one(match: re.Match) -> str:
        name = match.group(1).strip()
        if name not in symbols:
            raise KeyError(f"unknown format-string symbol {name!r} in {text!r}")
        return symbols[name]
    return re.sub(r"\{\{([^}]*)\}\}", one, text)


def _range(expr, symbols: dict[str, str]) -> list[int]:
    """A task parameter's INT range: a list, or a range expression such as '1-3' or '1,4,6-8'."""
    if isinstance(expr, list):
        return [int(_substitute(str(v), symbols)) for v in expr]
    out = []
    for part in _substitute(str(expr), symbols).split(","):
        a, _, b = part.strip().partition("-")
        out += list(range(int(a), int(b or a) + 1))
    return out


def _ordered(steps: list[dict]) -> list[dict]:
    done, order = set(), []
    while len(order) < len(steps):
        ready = [s for s in steps if s["name"] not in done
                 and all(d["dependsOn"] in done for d in s.get("dependencies", []))]
        assert ready, "the steps' dependencies form a cycle"
        order += ready
        done |= {s["name"] for s in ready}
    return order


def run_openjd(template: dict, params: dict[str, str]) -> list[subprocess.CompletedProcess]:
    defs = {p["name"]: p for p in template["parameterDefinitions"]}
    values = {name: str(params.get(name, d.get("default", ""))) for name, d in defs.items()}
    assert set(params) <= set(defs), f"unknown job parameters {set(params) - set(defs)}"
    for name, d in defs.items():
        assert values[name] != "" or "default" in d, f"job parameter {name} needs a value"
        if "allowedValues" in d:
            assert values[name] in [str(v) for v in d["allowedValues"]], (name, values[name])
    symbols = {f"Param.{k}": v for k, v in values.items()} | {f"RawParam.{k}": v for k, v in values.items()}
    results = []
    for step in _ordered(template["steps"]):
        tasks = [{}]
        for tp in (step.get("parameterSpace") or {}).get("taskParameterDefinitions", []):
            tasks = [{**t, f"Task.Param.{tp['name']}": str(v)} for t in tasks for v in _range(tp["range"], symbols)]
        for task in tasks:
            action = step["script"]["actions"]["onRun"]
            argv = [_substitute(action["command"], symbols | task)]
            argv += [_substitute(str(a), symbols | task) for a in action.get("args", [])]
            res = subprocess.run(argv, capture_output=True, text=True, timeout=900)
            assert res.returncode == 0, f"{step['name']} {task}: {res.stdout[-2000:]}{res.stderr[-2000:]}"
            results.append(res)
    return results


@pytest.fixture(scope="module")
def street(tmp_path_factory):
    return write_street(tmp_path_factory.mktemp("street") / "street", n_train=32, n_test=4, size=(64, 48))


@pytest.fixture(scope="module")
def openjd_job(street, tmp_path_factory):
    yaml = pytest.importorskip("yaml")
    template = yaml.safe_load(OPENJD.read_text())
    out = tmp_path_factory.mktemp("deadline") / "street.glb"
    results = run_openjd(template, {"Capture": str(street), "Output": str(out), "Blocks": "2", "Preset": "tiny",
                                    "Settings": SETTINGS, "NrconvertCommand": NRCONVERT})
    return template, out, results


def test_openjd_template_is_valid_per_the_spec(openjd_job):
    template, _, _ = openjd_job
    assert template["specificationVersion"] == "jobtemplate-2023-09"
    model = pytest.importorskip("openjd.model", reason="openjd-model validates the template against the schema")
    job_template = model.decode_job_template(template=template)
    assert [s.name for s in job_template.steps] == ["Split", "Train", "Bake", "Merge"]


def test_openjd_job_makes_a_valid_glb_and_reports_progress(openjd_job):
    _, out, results = openjd_job
    assert len(results) == 1 + 2 + 2 + 1  # split, a train and a bake per block, merge
    assert validate_glb(out).errors == 0
    doc = read_glb(out).doc
    assert sum("nrconvert_block" in (n.get("extras") or {}) for n in doc["nodes"]) == 2
    for res in results[1:3]:  # the training tasks: the bar climbs to 100 in whole percents
        pct = [int(line.split(": ")[1]) for line in res.stdout.splitlines() if line.startswith("openjd_progress: ")]
        assert pct == sorted(pct) and pct[-1] == 100 and len(pct) > 10
        assert any(line.startswith("openjd_status: ") for line in res.stdout.splitlines())


STUB = r"""
const fs = require("fs");
const vm = require("vm");
const tasks = [];
const author = {
  Task: (name, type) => ({ name, type, commands: [], deps: [],
    addCommand(c) { this.commands.push(c); }, addDependency(t) { this.deps.push(t.name); } }),
  Command: (name, params) => ({ name, params }),
};
const ctx = vm.createContext({ author });
vm.runInContext(fs.readFileSync(process.argv[1], "utf8"), ctx);
const job = { settings: JSON.parse(process.argv[2]), addTask(t) { tasks.push(t); } };
const jobType = vm.runInContext("JOB_TYPE", ctx);  // a top-level const is no property of the context
for (const s of jobType.settings) {
  if (!(s.key in job.settings) && "default" in s) job.settings[s.key] = s.default;
}
vm.runInContext("compileJob", ctx)(job);
console.log(JSON.stringify(tasks.map(t => ({ name: t.name, type: t.type, deps: t.deps, commands: t.commands }))));
"""


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    return node


def test_flamenco_job_type_is_valid_javascript():
    res = subprocess.run([_node(), "--check", str(FLAMENCO)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_flamenco_job_reruns_one_block_and_merges(openjd_job, street, tmp_path):
    """compileJob's tasks, run in dependency order on a copy of the OpenJD job's work folder whose
    block 1 was deleted: block 1 is trained and baked again, block 2 only reloaded, the merge
    writes a valid GLB."""
    _, out, _ = openjd_job
    work = tmp_path / "street.work"
    shutil.copytree(out.with_suffix(".work"), work)
    shutil.rmtree(work / "block_01")
    kept = (work / "block_02" / "field.pt").stat().st_mtime_ns
    settings = {"capture": str(street), "output": str(tmp_path / "street.glb"), "blocks": 2, "preset": "tiny",
                "settings": SETTINGS, "nrconvert": NRCONVERT}
    res = subprocess.run([_node(), "-e", STUB, str(FLAMENCO), json.dumps(settings)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    tasks = json.loads(res.stdout)
    assert [t["name"] for t in tasks] == ["split", "train-1", "bake-1", "train-2", "bake-2", "merge"]
    deps = {t["name"]: t["deps"] for t in tasks}
    assert deps["train-1"] == ["split"] and deps["bake-2"] == ["train-2"]
    assert sorted(deps["merge"]) == ["bake-1", "bake-2"]
    done: set[str] = set()
    while len(done) < len(tasks):
        ready = [t for t in tasks if t["name"] not in done and set(t["deps"]) <= done]
        assert ready
        for task in ready:
            for cmd in task["commands"]:
                assert cmd["name"] == "exec"
                run = subprocess.run([cmd["params"]["exe"], *cmd["params"]["args"]], capture_output=True,
                                     text=True, timeout=900)
                assert run.returncode == 0, f"{task['name']}: {run.stdout[-2000:]}{run.stderr[-2000:]}"
            done.add(task["name"])
    assert (work / "block_01" / "block.json").exists()
    assert (work / "block_02" / "field.pt").stat().st_mtime_ns == kept  # not trained again
    assert validate_glb(tmp_path / "street.glb").errors == 0
