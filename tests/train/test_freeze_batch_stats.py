"""`config.freeze_batch_stats`: the matching batch-norm statistics stay bit-identical through
train steps while the others (and the parameters) change."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import traverse_util

from cnnjax.train.runner.components import build, make_batches
from cnnjax.train.runner.config import prepare_config
from experiments.configs import tiny


def _stats(state):
    return traverse_util.flatten_dict(jax.device_get(state.model_state["batch_stats"]))


def test_frozen_batch_stats_stay_bit_identical():
    c = tiny.get_config()
    c.freeze_batch_stats = ("stage1/*",)
    comp = build(prepare_config(c))
    state = comp.init_state()
    before = _stats(state)
    assert any(k[0] == "stage1" for k in before) and any(k[0] != "stage1" for k in before)
    batches = make_batches(comp.config, "train", train=True, source=comp.train_source)
    for _ in range(2):
        state, _ = comp.train_step(state, next(batches))
    after = _stats(state)
    for key, value in before.items():
        if key[0] == "stage1":
            assert after[key].tobytes() == value.tobytes(), key
        else:
            assert not np.array_equal(after[key], value), key


def test_freeze_batch_stats_pattern_must_match():
    c = tiny.get_config()
    c.freeze_batch_stats = ("encoder/*",)
    comp = build(prepare_config(c))
    state = comp.init_state()
    batches = make_batches(comp.config, "train", train=True, source=comp.train_source)
    with pytest.raises(ValueError, match="freeze_batch_stats pattern 'encoder/\\*'"):
        comp.train_step(state, next(batches))
