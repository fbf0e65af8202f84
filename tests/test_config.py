"""Command-line options to settings: the same options mean the same Config for every command."""
from __future__ import annotations

import pytest

from nrconvert.config import PRESETS, config_from_options, parse_sets
from nrconvert.errors import UsageError


def test_options_reach_their_settings():
    cfg = config_from_options("fast", ["steps=10,threads=1", "pbr_steps=5"], lods=2, texture_size=128,
                              pbr=False, neural=False, downscale=2)
    assert (cfg.preset, cfg.steps, cfg.threads, cfg.pbr_steps) == ("fast", 10, 1, 5)
    assert (cfg.lods, cfg.texture_size, cfg.pbr, cfg.neural, cfg.downscale) == (2, 128, False, False, 2)
    assert cfg.hash_log2_table == PRESETS["fast"]["hash_log2_table"]  # the preset under the overrides


@pytest.mark.parametrize("kwargs, words", [
    (dict(sets=["steps"]), "key=value"), (dict(sets=["nope=1"]), "nope"), (dict(sets=["steps=many"]), "many"),
    (dict(lods=0), "--lods"), (dict(texture_size=100), "power of two"), (dict(downscale=0), "--downscale"),
    (dict(preset="huge"), "huge"), (dict(sets=["pbr_light=cubemap"]), "pbr_light must be one of map, sg"),
    (dict(sets=["color_input=normal"]), "color_input must be one of reflect, view"),
    (dict(sets=["neural_environment=100"]), "power of two from 8"),
    (dict(sets=["neural_encoding=sh2"]), "with sh2 also set neural_environment=0"),
    (dict(sets=["neural_environment=0"]), "without one choose sh2_reflected_nv"),
])
def test_bad_options_are_usage_errors(kwargs, words):
    args = dict(preset="tiny", sets=[]) | kwargs
    with pytest.raises(UsageError, match=words):
        config_from_options(**args)


def test_set_pairs_split_on_commas_and_trim():
    assert parse_sets([" steps = 4 , lr=0.5", "seed=3"]) == {"steps": "4", "lr": "0.5", "seed": "3"}
