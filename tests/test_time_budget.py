"""The training time budget is the whole training's: an opaque capture's first fit counts in it."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from nrconvert.config import make_config
from nrconvert.render.rays import Box
from nrconvert.train import trainer
from nrconvert.train.data import RayData


class _Clock:
    """Advances one second per reading: the loop's time checks become a step count."""

    def __init__(self):
        self.now = 0.0

    def time(self) -> float:
        self.now += 1.0
        return self.now


def _fracs(monkeypatch, spent_s: float, resume: dict | None = None) -> tuple[list[float], dict]:
    cfg = make_config("tiny", {"device": "cpu", "steps": 10_000, "time_budget_s": 400.0, "eval_every": 0,
                               "checkpoint_every": 10**9, "checkpoint_every_s": 1e9})
    tf = trainer.build_field(cfg, Box(np.zeros(3), np.ones(3)), masked=True, hull=None)
    data = RayData(torch.zeros(8, 3), torch.ones(8, 3) / 3**0.5, torch.zeros(8, 3), torch.ones(8))
    fracs, seen = [], {}

    def step(tf_, data_, cfg_, opt, state, frac):  # the schedule's position, no real work
        fracs.append(frac)
        seen["state"] = state
        return {"step": state.step}

    monkeypatch.setattr(trainer, "time", _Clock())
    monkeypatch.setattr(trainer, "_guarded_step", step)
    trainer.train(tf, data, cfg, spent_s=spent_s, resume=resume)
    return fracs, seen


def test_first_fit_seconds_shorten_the_fit_and_its_schedules(monkeypatch):
    full, _ = _fracs(monkeypatch, 0.0)
    short, seen = _fracs(monkeypatch, 100.0)
    assert len(short) < 0.8 * len(full), (len(short), len(full))
    # the schedules still run their whole course, from 0 to (nearly) 1, in the shorter time
    assert short[0] == 0.0 and full[0] == 0.0 and short[-1] == pytest.approx(full[-1], abs=0.02)
    assert seen["state"].spent_before_s == 100.0  # kept in the loop state that checkpoints carry


def test_a_slow_first_fit_leaves_half_the_budget(monkeypatch):
    half, _ = _fracs(monkeypatch, 200.0)
    starved, _ = _fracs(monkeypatch, 10_000.0)
    assert len(starved) == len(half) > 0


def test_a_failed_first_fit_gives_its_time_back(monkeypatch):
    """No hull from the estimated masks: the main fit starts from a sphere and gets the whole budget."""
    from nrconvert.train import matting

    box = Box(np.zeros(3), np.ones(3))
    data = RayData(torch.zeros(8, 3), torch.ones(8, 3), torch.zeros(8, 3), None)
    cfg = make_config("tiny", {"device": "cpu"})
    monkeypatch.setattr(matting, "object_box", lambda *a: (box, None))
    def fitted(*_):
        time.sleep(0.01)
        return box, np.ones((4, 4, 4), bool), None

    monkeypatch.setattr(matting, "opaque_prior", fitted)
    assert matting.starting_shape(cfg, [], data).spent_s >= 0.01
    monkeypatch.setattr(matting, "opaque_prior", lambda *a: (box, None, None))
    assert matting.starting_shape(cfg, [], data).spent_s == 0.0


def test_building_the_kernels_is_not_training_time(monkeypatch):
    """A first use builds the C++ kernels (~30 s on 2 cores): that must happen before the budget's
    clock starts, in the first fit as in the main one. Built inside the first timed step, it once
    ate all of a `fast` opaque first fit's 22 s, whose masks then separated nothing."""
    from nrconvert.train import matting

    plain, _ = _fracs(monkeypatch, 0.0)
    clock = _Clock()
    monkeypatch.setattr(trainer, "backend", lambda device: setattr(clock, "now", clock.now + 300.0))
    monkeypatch.setattr(trainer, "time", clock)
    slow_build = []
    monkeypatch.setattr(trainer, "_guarded_step", lambda tf, d, c, o, state, frac: slow_build.append(frac) or {})
    cfg = make_config("tiny", {"device": "cpu", "steps": 10_000, "time_budget_s": 400.0, "eval_every": 0,
                               "checkpoint_every": 10**9, "checkpoint_every_s": 1e9})
    tf = trainer.build_field(cfg, Box(np.zeros(3), np.ones(3)), masked=True, hull=None)
    trainer.train(tf, RayData(torch.zeros(8, 3), torch.ones(8, 3) / 3**0.5, torch.zeros(8, 3), torch.ones(8)), cfg)
    assert len(slow_build) == len(plain) > 0

    box = Box(np.zeros(3), np.ones(3))
    monkeypatch.setattr(matting, "object_box", lambda *a: (box, None))
    monkeypatch.setattr(matting, "backend", lambda device: time.sleep(0.3))
    monkeypatch.setattr(matting, "opaque_prior", lambda *a: (box, np.ones((4, 4, 4), bool), None))
    spent = matting.starting_shape(make_config("tiny", {"device": "cpu"}), [], RayData(
        torch.zeros(8, 3), torch.ones(8, 3), torch.zeros(8, 3), None)).spent_s
    assert spent < 0.2


def test_a_starved_run_is_marked_and_warned(monkeypatch):
    """A budget that ends training before half its steps leaves a mark in the history and a
    warning that names the steps reached and a budget that would train them all."""
    cfg = make_config("tiny", {"device": "cpu", "steps": 10_000, "time_budget_s": 400.0, "eval_every": 0,
                               "checkpoint_every": 10**9, "checkpoint_every_s": 1e9})
    tf = trainer.build_field(cfg, Box(np.zeros(3), np.ones(3)), masked=True, hull=None)
    data = RayData(torch.zeros(8, 3), torch.ones(8, 3) / 3**0.5, torch.zeros(8, 3), torch.ones(8))
    monkeypatch.setattr(trainer, "time", _Clock())
    monkeypatch.setattr(trainer, "_guarded_step", lambda tf_, data_, cfg_, opt, state, frac: {"step": state.step + 1})
    trainer.train(tf, data, cfg)
    last = tf.history[-1]
    assert last["step"] < 10_000 / 2 and last["stopped_by"] == "time_budget" and last["budget_s"] == 400.0
    note = trainer.under_trained(last, cfg.steps)
    assert f"after {last['step']} of 10000 steps" in note and "--set time_budget_s=" in note
    need = int(note.split("time_budget_s=")[1].split(",")[0])
    assert need >= last["seconds"] * 10_000 / last["step"]  # enough for every step at this pace
    # enough steps, or the steps (not the clock) ended it: no warning
    assert trainer.under_trained({**last, "step": 6000}, 10_000) is None
    assert trainer.under_trained({"step": 100, "seconds": 5.0}, 10_000) is None


def test_field_evaluation_samples_the_whole_view():
    # a 640x480 view, rows in order: the first 20,000 rays are its top 31 rows (sky on a street)
    n, w = 640 * 480, 640
    idx = trainer.eval_indices(n, 20000)
    rows = idx.numpy() // w
    assert len(idx) == 20000 and idx[0] == 0 and bool((idx[1:] > idx[:-1]).all()) and int(idx[-1]) < n
    assert rows.max() >= 478 and len(np.unique(rows)) == 480  # every row of the view is scored
    assert torch.equal(trainer.eval_indices(5000, 20000), torch.arange(5000))  # small views: every ray
