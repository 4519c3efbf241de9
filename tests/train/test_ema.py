"""EMA of the weights (`config.ema_decay`, `cnnjax.train.ema`): the compiled step's update
against a NumPy closed form for every strategy, halted steps, gradient accumulation, and
that EMA never changes the trained weights."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util
from train_testutil import quadrant_batch

from cnnjax import train
from cnnjax.train.ema import EmaSpec, ema_spec, resolve_weights, select_weights
from cnnjax.train.runner.config import default_config, prepare_config


class TinyBN(nn.Module):
    """Conv -> BatchNorm -> Dense: parameters and batch statistics to average."""

    dtype: object = jnp.float32
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        x = nn.Conv(4, (3, 3), dtype=self.dtype)(x)
        x = nn.BatchNorm(use_running_average=not train, axis_name=self.axis_name)(x)
        return nn.Dense(4, dtype=self.dtype)(nn.relu(x).mean(axis=(1, 2)))


DECAY = 0.3  # warm-up (1 + t) / (10 + t) is below it for t <= 2, above from t = 3


def _flat(tree) -> dict:
    return traverse_util.flatten_dict(jax.device_get(tree))


def _weights(state) -> dict:
    return _flat({"params": state.params, "model_state": state.model_state})


def _numpy_ema(history: list[dict], decay: float, every: int = 1) -> dict:
    """Closed form: e <- e + (1 - d_t) (w - e) after each optimizer update, d_t = min(decay,
    (1 + t) / (10 + t)), in float32 (history[0]: the initial weights)."""
    ema = {k: v.copy() for k, v in history[0].items()}
    for step, weights in enumerate(history[1:]):
        if (step + 1) % every:
            continue
        t = step // every
        d = np.float32(min(decay, (1 + t) / (10 + t)))
        ema = {k: ema[k] + (np.float32(1) - d) * (weights[k] - ema[k]) for k in ema}
    return ema


def _run(strategy: str, steps: int, *, every: int = 1, decay: float = DECAY):
    mesh = train.make_mesh()
    tx = train.make_optimizer({"name": "sgd", "learning_rate": 0.5, "momentum": 0.9,
                               "accumulate_steps": every}, total_steps=steps)
    task = train.classification()
    state = train.create_train_state(TinyBN(), tx, 0, (8, 8, 8, 3), mesh=mesh, ema=True)
    step = train.make_train_step(TinyBN(), task, tx, strategy=strategy, mesh=mesh,
                                 ema=EmaSpec(decay, every))
    rng = np.random.default_rng(1)
    history, emas = [_weights(state)], [_flat(state.ema)]
    for _ in range(steps):
        state, _ = step(state, quadrant_batch(rng, 16))
        history.append(_weights(state))
        emas.append(_flat(state.ema))
    return state, history, emas


@pytest.mark.parametrize("strategy", ["jit", "shard_map", "pmap"])
def test_ema_update_equals_the_numpy_closed_form(strategy):
    _, history, emas = _run(strategy, 5)
    assert emas[0].keys() == history[0].keys()
    assert any(k[0] == "model_state" for k in history[0])  # batch statistics averaged too
    for n in range(1, 6):
        expected = _numpy_ema(history[: n + 1], DECAY)
        for key, value in expected.items():
            np.testing.assert_allclose(emas[n][key], value, rtol=2e-6, atol=1e-7,
                                       err_msg=f"{strategy} step {n} {key}")
    final = history[-1]
    assert any(not np.allclose(emas[-1][k], final[k]) for k in final)  # a lagging average


def test_ema_with_gradient_accumulation_moves_at_optimizer_updates_only():
    _, history, emas = _run("jit", 4, every=2)
    for n in range(1, 5):
        expected = _numpy_ema(history[: n + 1], DECAY, every=2)
        for key, value in expected.items():
            np.testing.assert_allclose(emas[n][key], value, rtol=2e-6, atol=1e-7)
    key = ("params", "Dense_0", "kernel")
    assert np.array_equal(emas[1][key], emas[0][key])  # micro-step: unchanged
    assert not np.array_equal(emas[2][key], emas[1][key])


def _bytes(tree) -> dict:
    """{path: bytes} of every leaf (a bitwise comparison)."""
    leaves = jax.tree_util.tree_flatten_with_path(jax.device_get(tree))[0]
    return {jax.tree_util.keystr(p): np.asarray(v).tobytes() for p, v in leaves}


def test_weights_that_stay_put_keep_their_ema_exactly():
    """A frozen weight (optimizer.freeze) must not drift by rounding: 0.3 * c + 0.7 * c is
    not always c in float32, the lerp form is."""
    mesh = train.make_mesh()
    tx = train.make_optimizer({"name": "sgd", "learning_rate": 0.5, "freeze": ("Conv_0/*",)})
    state = train.create_train_state(TinyBN(), tx, 0, (8, 8, 8, 3), mesh=mesh, ema=True)
    step = train.make_train_step(TinyBN(), train.classification(), tx, mesh=mesh,
                                 ema=EmaSpec(0.3))
    before = _flat(state.ema["params"])
    rng = np.random.default_rng(4)
    for _ in range(4):
        state, _ = step(state, quadrant_batch(rng, 16))
    after = _flat(state.ema["params"])
    kernel, dense = ("Conv_0", "kernel"), ("Dense_0", "kernel")
    assert after[kernel].tobytes() == before[kernel].tobytes()
    assert not np.array_equal(after[dense], before[dense])


def test_halted_and_nonfinite_steps_leave_the_ema_unchanged():
    mesh = train.make_mesh()
    tx = train.make_optimizer({"name": "adamw", "learning_rate": 1e-2})
    task = train.classification()
    state = train.create_train_state(TinyBN(), tx, 0, (8, 8, 8, 3), mesh=mesh, ema=True)
    step = train.make_train_step(TinyBN(), task, tx, mesh=mesh, donate=False,
                                 ema=EmaSpec(0.9))
    rng = np.random.default_rng(2)
    state, _ = step(state, quadrant_batch(rng, 16))  # the EMA differs from the init now
    before = _bytes(state)
    halted, metrics = step(state, quadrant_batch(rng, 16), jnp.float32(1.0))
    assert float(metrics["nonfinite"][0]) == 1.0 and _bytes(halted) == before
    batch = quadrant_batch(rng, 16)
    batch["image"][0, 0, 0, 0] = np.nan
    frozen, metrics = step(state, batch)
    assert float(metrics["nonfinite"][0]) == 1.0 and _bytes(frozen) == before
    moved, metrics = step(state, quadrant_batch(rng, 16))
    assert float(metrics["nonfinite"][0]) == 0.0
    assert _flat(moved.ema).keys() == _flat(state.ema).keys()
    assert any(a != b for a, b in zip(_bytes(moved.ema).values(), _bytes(state.ema).values(),
                                      strict=True))


def test_ema_does_not_change_the_trained_weights():
    """ema_decay = 0 is the code path without EMA: no leaf added, and the raw weights of a
    run with EMA are bitwise those of the same run without it."""
    mesh = train.make_mesh()
    tx = train.make_optimizer({"name": "adamw", "learning_rate": 1e-2})
    task = train.classification()
    plain = train.create_train_state(TinyBN(), tx, 0, (8, 8, 8, 3), mesh=mesh)
    with_ema = train.create_train_state(TinyBN(), tx, 0, (8, 8, 8, 3), mesh=mesh, ema=True)
    assert plain.ema is None
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(plain)[0]]
    assert not any("ema" in p for p in paths)
    step_plain = train.make_train_step(TinyBN(), task, tx, mesh=mesh)
    step_ema = train.make_train_step(TinyBN(), task, tx, mesh=mesh, ema=EmaSpec(0.9))
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    for _ in range(3):
        plain, _ = step_plain(plain, quadrant_batch(rng_a, 16))
        with_ema, _ = step_ema(with_ema, quadrant_batch(rng_b, 16))
    assert _bytes(plain) == _bytes(with_ema.replace(ema=None))


def test_state_and_step_must_agree_on_the_ema():
    mesh = train.make_mesh()
    tx = train.make_optimizer({"name": "sgd", "learning_rate": 0.1})
    task = train.classification()
    state = train.create_train_state(TinyBN(), tx, 0, (8, 8, 8, 3), mesh=mesh)
    step = train.make_train_step(TinyBN(), task, tx, mesh=mesh, ema=EmaSpec(0.9))
    with pytest.raises(ValueError, match="state has none"):
        step(state, quadrant_batch(np.random.default_rng(0), 16))


def test_spec_weights_and_config_errors_name_the_value():
    assert ema_spec(0.0) is None and ema_spec(0.99, 4) == EmaSpec(0.99, 4)
    for bad in (1.0, -0.1, float("nan"), True):
        with pytest.raises(ValueError, match="decay="):
            EmaSpec(bad)
    assert resolve_weights(None, True) == "ema" and resolve_weights(None, False) == "raw"
    assert resolve_weights("raw", True) == "raw"
    with pytest.raises(ValueError, match="trained without an EMA"):
        resolve_weights("ema", False)
    with pytest.raises(ValueError, match="'best'"):
        resolve_weights("best", True)
    config = default_config()
    config.ema_decay = 1.5
    with pytest.raises(ValueError, match=r"config.ema_decay=1.5"):
        prepare_config(config)


def test_select_weights_swaps_params_and_model_state():
    mesh = train.make_mesh()
    tx = train.make_optimizer({"name": "sgd", "learning_rate": 0.1})
    state = train.create_train_state(TinyBN(), tx, 0, (8, 8, 8, 3), mesh=mesh, ema=True)
    state = state.replace(ema=jax.tree.map(lambda x: x + 1, state.ema))
    ema = select_weights(state)
    assert ema.params is state.ema["params"] and ema.model_state is state.ema["model_state"]
    assert select_weights(state, "raw") is state
    assert select_weights(state.replace(ema=None)).params is state.params
