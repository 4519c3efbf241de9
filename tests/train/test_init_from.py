"""`config.init_from` / `init_exclude`: loading another run's or a weights file's variables into
a new run, head re-initialisation, errors, resume wins, and exact resume of fine-tuning runs."""

from __future__ import annotations

import logging

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import traverse_util

from cnnjax.train.runner.components import build
from cnnjax.train.runner.config import prepare_config
from cnnjax.train.runner.evaluation import restore
from cnnjax.train.runner.init_from import initialise, merge_variables, parse_init_from
from cnnjax.train.runner.loop import train_and_evaluate
from experiments.configs import tiny


def _config(**overrides):
    c = tiny.get_config()
    c.async_checkpointing = False
    c.test_split = None
    for k, v in overrides.items():
        c[k] = v
    return c


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    """A finished tiny run (cnn2d on 16x16 shapes, 6 steps, checkpoints at 3 and 6)."""
    workdir = tmp_path_factory.mktemp("source")
    train_and_evaluate(_config(), workdir)
    return workdir


def _flat(state):
    return traverse_util.flatten_dict(
        jax.device_get({"params": state.params, **state.model_state}))


def test_merge_copies_excludes_and_reinitialises_head():
    fresh = {("params", "conv", "kernel"): np.zeros((3, 3)),
             ("params", "conv", "bias"): np.zeros(3),
             ("params", "logits", "kernel"): np.zeros((4, 5))}
    loaded = {("params", "conv", "kernel"): np.ones((3, 3)),
              ("params", "conv", "bias"): np.ones(3),
              ("params", "logits", "kernel"): np.ones((4, 7))}
    merged, reinit = merge_variables(fresh, loaded, ("conv/bias",))
    np.testing.assert_array_equal(merged[("params", "conv", "kernel")], np.ones((3, 3)))
    np.testing.assert_array_equal(merged[("params", "conv", "bias")], np.zeros(3))  # excluded
    np.testing.assert_array_equal(merged[("params", "logits", "kernel")], np.zeros((4, 5)))
    assert reinit == ["params/logits/kernel"]


def test_merge_errors_list_every_key():
    fresh = {("params", "a", "kernel"): np.zeros((3, 3)), ("params", "b", "kernel"): np.zeros(2)}
    loaded = {("params", "a", "kernel"): np.ones((3, 4)), ("params", "c", "kernel"): np.ones(1)}
    with pytest.raises(ValueError) as e:
        merge_variables(fresh, loaded)
    msg = str(e.value)
    assert "shape mismatch params/a/kernel" in msg and "(3, 3)" in msg and "(3, 4)" in msg
    assert "missing params/b/kernel" in msg and "unexpected params/c/kernel" in msg
    with pytest.raises(ValueError, match="'nothing/\\*' matches no variable"):
        merge_variables(fresh, fresh, ("nothing/*",))


def test_parse_init_from(tmp_path, source_run):
    assert parse_init_from(str(source_run)) == ("workdir", source_run, None)
    assert parse_init_from(f"{source_run}:latest") == ("workdir", source_run, "latest")
    assert parse_init_from(f"{source_run}:3") == ("workdir", source_run, 3)
    with pytest.raises(ValueError, match="no such weights file"):
        parse_init_from(str(tmp_path / "w.pth"))
    with pytest.raises(ValueError, match="nor a cnnjax workdir"):
        parse_init_from(str(tmp_path))


def test_initialise_loads_best_then_latest(source_run, caplog):
    c = build(prepare_config(_config(init_from=str(source_run))))
    fresh = c.init_state()
    best, best_step, _ = restore(c, source_run, "best")
    with caplog.at_level(logging.INFO, logger="cnnjax.train"):
        state = initialise(c, fresh, resumed=False)
    for key, value in _flat(best).items():
        np.testing.assert_array_equal(_flat(state)[key], value, err_msg=str(key))
    assert f"step {best_step}" in caplog.text
    latest, _, _ = restore(c, source_run, "latest")
    c_latest = build(prepare_config(_config(init_from=f"{source_run}:latest")))
    state = initialise(c_latest, c_latest.init_state(), resumed=False)
    np.testing.assert_array_equal(_flat(state)[("params", "logits", "kernel")],
                                  _flat(latest)[("params", "logits", "kernel")])


def test_resume_wins_over_init_from(source_run, caplog):
    c = build(prepare_config(_config(init_from=str(source_run))))
    fresh = c.init_state()
    with caplog.at_level(logging.INFO, logger="cnnjax.train"):
        state = initialise(c, fresh, resumed=True)
    assert state is fresh and "ignored" in caplog.text


def _final_variables(workdir, step):
    with checkpoints_of(workdir) as m:
        saved = m.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    return dict(jax.tree_util.tree_flatten_with_path(saved["state"])[0])


def checkpoints_of(workdir):
    return ocp.CheckpointManager(workdir / "checkpoints")


@pytest.mark.slow
def test_fine_tuning_run_resumes_exactly(source_run, tmp_path):
    """Stop a fine-tuning run at step 3 and run the same workdir to 6 (init_from ignored on
    resume): the final state is bitwise the uninterrupted run's."""
    options = {"init_from": str(source_run), "freeze_batch_stats": ("stage1/*",)}
    whole, split = tmp_path / "whole", tmp_path / "split"
    c = _config(**options)
    c.optimizer.lr_multipliers = (("logits/*", 1.0), ("*", 0.5))
    train_and_evaluate(c, whole)
    short = _config(**options, num_train_steps=3)
    short.optimizer.lr_multipliers = c.optimizer.lr_multipliers
    train_and_evaluate(short, split)
    train_and_evaluate(c, split)
    a, b = _final_variables(whole, 6), _final_variables(split, 6)
    assert a.keys() == b.keys()
    for key in a:
        assert np.asarray(a[key]).tobytes() == np.asarray(b[key]).tobytes(), str(key)
