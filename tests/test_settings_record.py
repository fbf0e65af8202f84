"""A resumed run with other settings redoes exactly the stages those settings change
(settings_record): on a work folder's files, and through the CLI on a real tiny conversion."""
from __future__ import annotations

import json
import shutil

import pygltflib
import pytest

from nrconvert.config import make_config
from nrconvert.errors import BlockError
from nrconvert.pipeline import Run
from nrconvert.settings_record import OUTPUTS, reconcile_settings, setting_stages, stale_stage

from .conftest import run_cli
from .test_convert_e2e import _png


def _work(tmp_path, cfg):
    run = Run(tmp_path / "in", tmp_path / "scene.glb", cfg, workdir=tmp_path / "work", resume=True)
    run.workdir.mkdir(exist_ok=True)
    for names in OUTPUTS.values():
        for name in names:
            (run.workdir / name).parent.mkdir(parents=True, exist_ok=True)
            (run.workdir / name).write_text("x")
    return run


def _left(run):
    return {name for names in OUTPUTS.values() for name in names if (run.workdir / name).exists()}


def test_every_setting_belongs_to_a_stage():
    stages = setting_stages()
    assert stages["steps"] == stages["seed"] == stages["occupancy_res"] == "train"
    assert stages["mc_resolution"] == stages["max_triangles"] == "extract"
    assert stages["texture_size"] == stages["pbr"] == "bake" and stages["neural_steps"] == "neural"
    assert "threads" not in stages and "checkpoint_every" not in stages


@pytest.mark.parametrize("change, stage, kept", [
    ({"texture_size": 512}, "bake", {"field.pt", "field.partial.pt", "mesh.npz"}),
    ({"max_triangles": 1000}, "extract", {"field.pt", "field.partial.pt"}),
    ({"steps": 10, "neural_steps": 5}, "train", set()),
    ({"neural_steps": 5}, "neural", {"field.pt", "field.partial.pt", "mesh.npz", "bake/bake.json"}),
    ({"threads": 1}, None, {"field.pt", "field.partial.pt", "mesh.npz", "bake/bake.json", "neural/neural.json"}),
])
def test_changed_settings_drop_their_stage_and_all_after(tmp_path, change, stage, kept):
    cfg = make_config("tiny", {})
    run = _work(tmp_path, cfg)
    assert reconcile_settings(run) is None  # first record: nothing to compare
    run.cfg = cfg.replace(**change)
    assert reconcile_settings(run) == stage
    assert _left(run) == kept
    assert json.loads((run.workdir / "settings.json").read_text())[next(iter(change))] == next(iter(change.values()))
    assert stale_stage(json.loads((run.workdir / "settings.json").read_text()), run.cfg) == (None, {})


def test_bake_unit_refuses_a_field_trained_otherwise(tmp_path):
    run = _work(tmp_path, make_config("tiny", {}))
    reconcile_settings(run)
    run.cfg = run.cfg.replace(steps=7)
    with pytest.raises(BlockError, match="steps 400 -> 7"):
        reconcile_settings(run, retrain=False)
    assert (run.workdir / "field.pt").exists()


def test_resume_with_a_new_texture_size_rebakes_without_training(tiny_conversion, tiny_capture, tmp_path):
    glb, _ = tiny_conversion
    out = tmp_path / "scene.glb"
    shutil.copytree(glb.with_suffix(".work"), out.with_suffix(".work"))
    res = run_cli(str(tiny_capture), "-o", str(out), "--preset", "tiny", "--resume", "--texture-size", "128",
                  "--progress", "json")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    started = [json.loads(line)["stage"] for line in res.stdout.splitlines()
               if line.startswith("{") and '"start"' in line]
    assert "train" not in started and "bake" in started and "neural" in started
    assert "texture_size 256 -> 128" in res.stderr + res.stdout
    g = pygltflib.GLTF2().load(str(out))
    albedo = _png(g, g.materials[g.meshes[0].primitives[0].material].pbrMetallicRoughness.baseColorTexture.index)
    assert albedo.shape[:2] == (128, 128)


def test_train_unit_rerun_keeps_what_the_bake_unit_made(tmp_path):
    """A farm's train unit has no bake options: re-run after `bake --texture-size 512` (a retried
    or replayed job), it must neither see a change nor overwrite the bake's recorded settings."""
    cfg = make_config("tiny", {})
    run = _work(tmp_path, cfg)
    run.cfg = cfg.replace(texture_size=512)  # the bake unit
    reconcile_settings(run)
    run.cfg = cfg  # the train unit, defaults for the bake settings
    assert reconcile_settings(run, upto="train") is None
    assert _left(run) == {name for names in OUTPUTS.values() for name in names}
    assert json.loads((run.workdir / "settings.json").read_text())["texture_size"] == 512
    run.cfg = cfg.replace(steps=7)  # a training change still retrains, and drops the bake
    assert reconcile_settings(run, upto="train") == "train" and _left(run) == set()
    assert json.loads((run.workdir / "settings.json").read_text())["texture_size"] == 512
