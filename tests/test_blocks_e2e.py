"""A wide scene in two blocks through the real CLI: one stitched GLB (a node per block, each with its
LOD chain, Khronos-valid), tiles with their index, and `merge` refusing unfinished blocks."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from nrconvert.export.reader import accessor, read_glb
from nrconvert.export.validate import validate_glb

from .conftest import run_cli
from .street_scene import write_street

pytestmark = pytest.mark.slow
# tiny, and lighter still: the point is the structure, not the quality
SETS = ["--set", "steps=160", "--set", "neural_steps=60", "--set", "pbr_steps=60", "--set", "texture_size=128"]
UNIT_SETS = ["--set", "steps=160,neural_steps=60,pbr_steps=60,texture_size=128"]


@pytest.fixture(scope="module")
def street(tmp_path_factory):
    return write_street(tmp_path_factory.mktemp("street") / "street", n_train=32, n_test=4, size=(64, 48))


@pytest.fixture(scope="module")
def converted(street, tmp_path_factory):
    out = tmp_path_factory.mktemp("blocks") / "street.glb"
    res = run_cli(str(street), "-o", str(out), "--blocks", "2", "--preset", "tiny", *SETS, "--progress", "json")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return out


def _gltf_to_capture(p: np.ndarray) -> np.ndarray:
    """glTF (x, y, z) -> Z-up capture frame (x, -z, y)."""
    return np.stack([p[:, 0], -p[:, 2], p[:, 1]], 1)


def test_stitched_glb_has_a_node_per_block_each_with_its_lods(converted):
    report = validate_glb(converted)
    assert report.ok and report.errors == 0, report.format()
    glb = read_glb(converted)
    doc = glb.doc
    roots = [doc["nodes"][i] for i in doc["scenes"][0]["nodes"]]
    blocks = [n for n in roots if "nrconvert_block" in (n.get("extras") or {})]
    assert [n["extras"]["nrconvert_block"]["id"] for n in blocks] == [1, 2]
    assert [n["name"] for n in blocks] == ["street_block01", "street_block02"]
    assert "MSFT_lod" in doc["extensionsUsed"]
    for node in blocks:
        info = node["extras"]["nrconvert_block"]
        (lod0_index,) = node["children"]
        lod0 = doc["nodes"][lod0_index]
        chain = [lod0_index, *lod0["extensions"]["MSFT_lod"]["ids"]]
        assert [doc["nodes"][i]["name"] for i in chain] == [f"{node['name']}_LOD{k}" for k in range(2)]
        counts = []
        for i in chain:
            prim = doc["meshes"][doc["nodes"][i]["mesh"]]["primitives"][0]
            counts.append(len(accessor(glb, prim["indices"])) // 3)
        assert counts[0] > counts[1] > 0
        # the block's surface stays in its own region, give or take the one-cell skirt
        prim = doc["meshes"][lod0["mesh"]]["primitives"][0]
        s = _gltf_to_capture(accessor(glb, prim["attributes"]["POSITION"])) @ np.asarray(info["axis"])
        size = max(np.subtract(info["hi"], info["lo"]))
        start, end = info["own"]
        if start is not None:
            assert s.min() >= start - size / 30
        if end is not None:
            assert s.max() <= end + size / 30
    metrics = json.loads((converted.with_suffix(".report") / "metrics.json").read_text())
    assert metrics["blocks"]["count"] == 2
    assert metrics["heldout"]["psnr_object"] > 18.0  # a real reconstruction of the row, not noise


def test_tiles_one_glb_per_block_and_an_index(converted, street):
    res = run_cli("merge", str(street), "-o", str(converted), "--blocks", "2", "--preset", "tiny", *UNIT_SETS,
                  "--tiles", "--progress", "none")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    index = json.loads(converted.with_name("street.index.json").read_text())
    assert [t["file"] for t in index["tiles"]] == ["street_block01.glb", "street_block02.glb"]
    layout = json.loads(converted.with_suffix(".work").joinpath("blocks.json").read_text())
    for tile, block in zip(index["tiles"], layout["blocks"]):
        path = converted.with_name(tile["file"])
        assert validate_glb(path).errors == 0
        doc = read_glb(path).doc
        assert doc["asset"]["extras"]["nrconvert"]["block"]["id"] == tile["id"] == block["id"]
        assert tile["bounds"] == {"min": block["lo"], "max": block["hi"]}
        assert tile["bytes"] == path.stat().st_size


def test_merge_names_the_unfinished_blocks(converted, street, tmp_path):
    work = tmp_path / "copy.work"
    shutil.copytree(converted.with_suffix(".work"), work)
    (work / "block_02" / "block.json").unlink()
    out = tmp_path / "copy.glb"
    res = run_cli("merge", str(street), "-o", str(out), "--workdir", str(work), "--blocks", "2", "--preset", "tiny",
                  *UNIT_SETS, "--progress", "none")
    assert res.returncode == 12, res.stderr
    assert "block 2 of 2 is not finished" in res.stderr and "--block 2" in res.stderr
    assert not out.exists()
    res = run_cli("bake", str(street), "-o", str(out), "--workdir", str(work), "--block", "3", "--blocks", "2",
                  "--preset", "tiny", "--progress", "none")
    assert res.returncode == 2 and "blocks 1 to 2" in res.stderr
