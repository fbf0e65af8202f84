"""Farm scripts (addon/farm/turntable.py, lod_sheet.py) as a farm runs them: a separate process
(`python SCRIPT -- ARGS` with the venv's bpy, as `blender -b --python SCRIPT -- ARGS` would),
checked on exit codes, `Saved:` lines and the images and JSON they write, read back."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from addon_fixtures import REPO, read_glb_json, write_asset_glb

pytest_plugins = ("addon_fixtures",)  # fixtures: addon_installed
FARM = REPO / "addon" / "farm"
TINY = ["--size", "48x40", "--samples", "2"]


def run_script(name: str, *args: str, user_resources: Path | None = None) -> subprocess.CompletedProcess:
    """The script in a fresh process; `user_resources` picks the Blender user folder (an empty
    one: no add-on installed; default: this session's, where the add-on fixture installs it)."""
    env = dict(os.environ)
    if user_resources is not None:
        env["BLENDER_USER_RESOURCES"] = str(user_resources)
    return subprocess.run([sys.executable, str(FARM / name), "--", *args], capture_output=True,
                          text=True, timeout=300, env=env)


def saved(res: subprocess.CompletedProcess) -> list[Path]:
    return [Path(m) for m in re.findall(r"^Saved: (.+)$", res.stdout, re.M)]


def rgba(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGBA"), dtype=np.float32) / 255.0


@pytest.fixture(scope="module")
def glb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The add-on test asset (3 LODs, PBR + neural captured look, estimated light .hdr beside)."""
    _, path = write_asset_glb(tmp_path_factory.mktemp("farm_glb") / "pbr_object.glb")
    return path


def lod_triangles(path: Path) -> list[int]:
    """Triangles per LOD node (`*_LOD<k>`), from the GLB's index accessors."""
    doc, _ = read_glb_json(path)
    out = {}
    for node in doc["nodes"]:
        m = re.match(r".*_LOD(\d+)$", node.get("name", ""))
        if m and "mesh" in node:
            prims = doc["meshes"][node["mesh"]]["primitives"]
            out[int(m.group(1))] = sum(doc["accessors"][p["indices"]]["count"] // 3 for p in prims)
    return [out[k] for k in sorted(out)]


def test_turntable_without_the_addon(glb, tmp_path):
    out = tmp_path / "turntable"
    res = run_script("turntable.py", "--glb", str(glb), "--out", str(out), "--frames", "3",
                     "--transparent", *TINY, user_resources=tmp_path / "no_addon")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Importer: Blender glTF" in res.stdout
    files = saved(res)
    assert files == [out / f"turntable_{i:04d}.png" for i in range(3)]
    images = [rgba(f) for f in files]
    for img in images:
        assert img.shape == (40, 48, 4)
        cover = (img[..., 3] > 0.5).mean()
        assert 0.03 < cover < 0.9, cover  # the object is there, and framed
        assert img[img[..., 3] > 0.5, :3].std() > 0.01  # shaded, not a flat fill
    assert np.abs(images[0] - images[1]).mean() > 1e-3, "the camera should orbit"


def test_turntable_with_the_addon_and_captured_look(glb, tmp_path, addon_installed):
    out = tmp_path / "turntable"
    res = run_script("turntable.py", "--glb", str(glb), "--out", str(out), "--frames", "2",
                     "--look", "captured", "--lod", "1", *TINY)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Importer: nrconvert add-on" in res.stdout and "Light: estimated (nrconvert" in res.stdout
    files = saved(res)
    assert len(files) == 2 and all(f.is_file() for f in files)
    img = rgba(files[0])
    background = img[0, 0, :3]
    differs = np.abs(img[..., :3] - background).max(-1) > 0.05
    assert 0.03 < differs.mean() < 0.9, differs.mean()  # the object stands out of the world


def test_lod_sheet(glb, tmp_path):
    out = tmp_path / "sheet"
    res = run_script("lod_sheet.py", "--glb", str(glb), "--out", str(out), *TINY,
                     user_resources=tmp_path / "no_addon")
    assert res.returncode == 0, res.stderr[-3000:]
    files = saved(res)
    assert files == [out / "lod_0.png", out / "lod_1.png", out / "lod_2.png", out / "lod_sheet.png",
                     out / "lod_sheet.json"]
    meta = json.loads(files[-1].read_text())
    assert [lvl["triangles"] for lvl in meta["levels"]] == lod_triangles(glb)
    assert [lvl["level"] for lvl in meta["levels"]] == [0, 1, 2]
    tiles = [rgba(f) for f in files[:3]]
    for tile in tiles:
        assert np.abs(tile[..., :3] - tile[0, 0, :3]).max(-1).max() > 0.1  # not blank
    assert np.abs(tiles[0] - tiles[2]).mean() > 1e-3  # coarser level, different image
    sheet = rgba(files[3])
    assert sheet.shape == (40, 3 * 48 + 2 * 4, 4)
    np.testing.assert_allclose(sheet[:, 52:100], tiles[1], atol=1 / 255 + 1e-6)  # LOD1 in the middle


@pytest.mark.parametrize("script", ["turntable.py", "lod_sheet.py"])
@pytest.mark.parametrize("case,code,text", [
    ("no_glb", 2, "--glb"),
    ("bad_size", 2, "--size"),
    ("zero_samples", 2, "--samples"),
    ("missing_file", 3, "no such file"),
    ("not_a_glb", 3, "cannot read the GLB"),
    ("truncated", 3, "cannot read the GLB"),
])
def test_usage_and_input_errors(glb, tmp_path, script, case, code, text):
    bad = tmp_path / "bad.glb"
    if case == "not_a_glb":
        bad.write_text("hello")
    elif case == "truncated":
        bad.write_bytes(glb.read_bytes()[:30])
    args = {"no_glb": ["--out", str(tmp_path)],
            "bad_size": ["--glb", str(glb), "--out", str(tmp_path), "--size", "big"],
            "zero_samples": ["--glb", str(glb), "--out", str(tmp_path), "--samples", "0"],
            "missing_file": ["--glb", str(tmp_path / "none.glb"), "--out", str(tmp_path)],
            }.get(case, ["--glb", str(bad), "--out", str(tmp_path)])
    res = run_script(script, *args, user_resources=tmp_path / "no_addon")
    assert res.returncode == code, (res.returncode, res.stderr[-2000:])
    assert "error:" in res.stderr and text in res.stderr
    assert "Traceback" not in res.stderr and not saved(res)


def test_turntable_frames_and_lod_checked(glb, tmp_path):
    for args, text in ((["--frames", "0"], "--frames"), (["--lod", "7"], "LODs 0..2")):
        res = run_script("turntable.py", "--glb", str(glb), "--out", str(tmp_path), *args, *TINY,
                         user_resources=tmp_path / "no_addon")
        assert res.returncode == 2 and text in res.stderr, res.stderr[-2000:]
