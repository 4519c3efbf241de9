"""Train and eval steps on 8 CPU devices: the three strategies against one device, exact
metrics with padding, the NaN guard, gradient accumulation, bfloat16 and dropout keys.

Compiled steps are built once per module (fixtures) because compiling dominates here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from train_testutil import host, max_abs_diff

from cnnjax import models, train

GLOBAL_BATCH = 16
IMAGE = (8, 8, 3)
STRATEGIES = ("jit", "shard_map", "pmap")
SGD = {"name": "momentum", "learning_rate": 0.1, "momentum": 0.9, "weight_decay": 1e-3}


def random_batch(seed: int, n: int = GLOBAL_BATCH, classes: int = 10) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "image": rng.normal(size=(n, *IMAGE)).astype(np.float32),
        "label": rng.integers(0, classes, n).astype(np.int32),
    }


def pad_to(batch: dict, n: int) -> dict:
    """The last-batch convention of cnnjax.data: zero rows up to `n`, `valid` = 0 there."""
    k = len(batch["label"])
    out = {
        key: np.concatenate([v, np.zeros((n - k, *v.shape[1:]), v.dtype)])
        for key, v in batch.items()
    }
    out["valid"] = np.concatenate([np.ones(k, np.float32), np.zeros(n - k, np.float32)])
    return out


def np_ce_accuracy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    ce = -logp[np.arange(len(labels)), labels].mean()
    return float(ce), float((logits.argmax(1) == labels).mean())


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def meshes():
    assert jax.device_count() == 8, "tests/conftest.py should give 8 CPU devices"
    return {1: train.make_mesh(1), 8: train.make_mesh(8)}


@pytest.fixture(scope="module")
def bn_setup(meshes):
    """ResNet-tiny (batch norm), SGD with momentum and weight decay, and its initial state."""
    model = models.create("resnet_tiny", num_classes=10)
    tx = train.make_optimizer(SGD)
    task = train.classification()
    state = train.create_train_state(model, tx, 0, (1, *IMAGE), mesh=meshes[1])
    return model, tx, task, jax.device_get(state)


@pytest.fixture(scope="module")
def bn_steps(meshes, bn_setup):
    """(train_step, eval_step) for one device and each strategy on 8 devices."""
    model, tx, task, _ = bn_setup
    out = {}
    for strategy, n in [("jit", 1), *[(s, 8) for s in STRATEGIES]]:
        out[strategy, n] = (
            train.make_train_step(model, task, tx, strategy=strategy, mesh=meshes[n]),
            train.make_eval_step(model, task, strategy=strategy, mesh=meshes[n]),
        )
    return out


def run_two_steps(bn_setup, bn_steps, meshes, strategy, n):
    """Two train steps on two batches from the common initial state; host copies back."""
    train_step, _ = bn_steps[strategy, n]
    state = train.replicate(bn_setup[3], meshes[n])
    metrics = []
    for seed in (1, 2):
        state, m = train_step(state, random_batch(seed))
        metrics.append(host(m))
    return state, metrics


@pytest.fixture(scope="module")
def reference(bn_setup, bn_steps, meshes):
    state, metrics = run_two_steps(bn_setup, bn_steps, meshes, "jit", 1)
    return host(state), metrics


# --------------------------------------------------------------------------- equivalence


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategy_step_equals_single_device_step(strategy, bn_setup, bn_steps, meshes, reference):
    state, metrics = run_two_steps(bn_setup, bn_steps, meshes, strategy, 8)
    ref_state, ref_metrics = reference
    got = host(state)
    assert int(got.step) == 2
    assert got.model_state["batch_stats"], "resnet_tiny should carry batch statistics"
    # The running statistics moved away from their initial values, identically.
    init_stats = host(bn_setup[3].model_state)
    assert max_abs_diff(ref_state.model_state, init_stats) > 1e-3
    np.testing.assert_allclose(max_abs_diff(got.model_state, ref_state.model_state), 0.0, atol=2e-6)
    assert max_abs_diff(got.params, ref_state.params) < 2e-6
    assert max_abs_diff(got.opt_state, ref_state.opt_state) < 2e-6
    for m, r in zip(metrics, ref_metrics, strict=True):
        assert set(m) == {"loss", "accuracy", "top5_accuracy", "nonfinite"}
        for name in m:
            np.testing.assert_allclose(m[name], r[name], rtol=2e-6, err_msg=name)
    # Every output stays replicated on the 8-device mesh (no silent gather to one device).
    rep = train.replicated_sharding(meshes[8])
    for x in jax.tree.leaves(state):
        assert x.sharding.is_equivalent_to(rep, x.ndim)


def test_loss_is_the_global_mean_cross_entropy(bn_setup, reference):
    """The single-device reference itself against a NumPy CE over the model's logits."""
    model, _, _, state = bn_setup
    batch = random_batch(1)
    variables = {"params": state.params, **state.model_state}
    logits, _ = model.apply(variables, batch["image"], train=True, mutable=["batch_stats"])
    ce, _ = np_ce_accuracy(np.asarray(logits), batch["label"])
    loss_sum, count = reference[1][0]["loss"]
    assert count == GLOBAL_BATCH
    np.testing.assert_allclose(loss_sum / count, ce, rtol=1e-5)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_eval_metrics_exact_with_padding(strategy, bn_setup, bn_steps, meshes):
    """21 examples in batches of 16: the last batch is 5 real rows and 11 padding rows,
    so some devices hold only padding. The summed metrics equal NumPy on all 21."""
    model, _, task, host_state = bn_setup
    data = random_batch(3, n=21)
    _, eval_step = bn_steps[strategy, 8]
    state = train.replicate(host_state, meshes[8])
    total = None
    for start in (0, 16):
        chunk = {k: v[start : start + 16] for k, v in data.items()}
        total = train.merge_metrics(total, eval_step(state, pad_to(chunk, 16)))
    out = task.finalize(total)
    variables = {"params": host_state.params, **host_state.model_state}
    logits = np.asarray(model.apply(variables, data["image"], train=False))
    ce, acc = np_ce_accuracy(logits, data["label"])
    top5 = np.mean(
        [lab in np.argsort(-row)[:5] for row, lab in zip(logits, data["label"], strict=True)]
    )
    assert total["accuracy"][1] == 21
    assert out["accuracy"] == pytest.approx(acc, abs=1e-12)
    assert out["top5_accuracy"] == pytest.approx(top5, abs=1e-12)
    assert out["loss"] == pytest.approx(ce, rel=1e-5)


# --------------------------------------------------------------------------- NaN guard


@pytest.mark.parametrize("strategy", ["jit", "shard_map"])
def test_nan_guard_keeps_the_last_good_state(strategy, bn_setup, bn_steps, meshes):
    train_step, _ = bn_steps[strategy, 8]
    state = train.replicate(bn_setup[3], meshes[8])
    state, m = train_step(state, random_batch(1))
    train.check_finite(m, 0)
    good = host(state)
    bad = random_batch(2)
    bad["image"][3, 0, 0, 0] = np.nan
    state, m = train_step(state, bad)
    assert not train.is_finite(m)
    assert max_abs_diff(host(state), good) == 0.0  # step counter, params, stats, optimizer
    with pytest.raises(train.NonFiniteError, match="at step 1 "):
        train.check_finite(m, 1)
    state, m = train_step(state, random_batch(2))  # training goes on from the good state
    assert train.is_finite(m) and int(state.step) == 2


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_halted_step_changes_nothing_and_passes_the_halt_on(strategy, bn_setup, bn_steps,
                                                              meshes):
    """`halted` (an earlier step's non-finite flag, as the loop chains it) freezes the state
    even on a finite batch; a zero flag trains as without one."""
    train_step, _ = bn_steps[strategy, 8]
    state = train.replicate(bn_setup[3], meshes[8])
    state, m = train_step(state, random_batch(1))
    good = host(state)
    bad = random_batch(2)
    bad["image"][0, 0, 0, 0] = np.inf
    state, m = train_step(state, bad, m["nonfinite"][0])  # finite flag in: a normal step
    assert not train.is_finite(m) and max_abs_diff(host(state), good) == 0.0
    for seed in (3, 4):  # finite batches after it: still frozen, still flagged
        state, m = train_step(state, random_batch(seed), m["nonfinite"][0])
        assert not train.is_finite(m)
        assert max_abs_diff(host(state), good) == 0.0
    state, m = train_step(state, random_batch(3), np.float32(0))
    assert train.is_finite(m) and int(state.step) == 2


# --------------------------------------------------------------------------- padding in training


@pytest.fixture(scope="module")
def plain_model():
    """A network without batch norm, so a padded training batch equals its valid rows."""
    return models.create("cnn2d", num_classes=10, widths=(4, 8), norm="none")


def test_training_with_padding_rows_equals_training_on_valid_rows(plain_model, meshes):
    """11 real rows and 5 garbage padding rows on 8 devices (devices hold 2, 2, 2, 2, 2, 1, 0,
    0 real rows) equal one device training on the 11 rows alone: the loss is normalised by
    the global count, not by per-device means."""
    tx = train.make_optimizer({"name": "adam", "learning_rate": 1e-2})
    task = train.classification(label_smoothing=0.1)
    init = jax.device_get(train.create_train_state(plain_model, tx, 1, (1, *IMAGE), mesh=meshes[1]))
    data = random_batch(4, n=11)
    padded = pad_to(data, 16)
    padded["image"][11:] = np.random.default_rng(5).normal(size=(5, *IMAGE)) * 100
    padded["label"][11:] = 7
    ref_step = train.make_train_step(plain_model, task, tx, mesh=meshes[1])
    ref_state, ref_m = ref_step(train.replicate(init, meshes[1]), data)
    step = train.make_train_step(plain_model, task, tx, strategy="shard_map", mesh=meshes[8])
    state, m = step(train.replicate(init, meshes[8]), padded)
    assert max_abs_diff(host(state.params), host(ref_state.params)) < 1e-6
    np.testing.assert_allclose(host(m["loss"]), host(ref_m["loss"]), rtol=1e-6)
    assert host(m["accuracy"])[1] == 11


def test_gradient_accumulation_equals_one_large_batch(plain_model, meshes):
    """4 micro-batches of 8 (shard_map, 1 row per device) = one step on the 32 rows."""
    cfg = {"name": "momentum", "learning_rate": 0.1, "grad_clip_norm": 10.0}
    task = train.classification()
    big_tx = train.make_optimizer(cfg)
    acc_tx = train.make_optimizer({**cfg, "accumulate_steps": 4})
    big = random_batch(6, n=32)
    init = train.create_train_state(plain_model, big_tx, 2, (1, *IMAGE), mesh=meshes[1])
    params0 = host(init.params)
    big_state, _ = train.make_train_step(plain_model, task, big_tx, mesh=meshes[1])(init, big)

    state = train.create_train_state(plain_model, acc_tx, 2, (1, *IMAGE), mesh=meshes[8])
    step = train.make_train_step(plain_model, task, acc_tx, strategy="shard_map", mesh=meshes[8])
    for i in range(4):
        micro = {k: v[8 * i : 8 * (i + 1)] for k, v in big.items()}
        state, _ = step(state, micro)
        if i < 3:
            assert max_abs_diff(host(state.params), params0) == 0.0
    assert int(state.step) == 4
    assert max_abs_diff(params0, host(big_state.params)) > 1e-3
    assert max_abs_diff(host(state.params), host(big_state.params)) < 1e-6


# --------------------------------------------------------------------------- bfloat16


def test_bfloat16_step_keeps_float32_master_weights_and_tracks_float32(bn_setup, meshes, reference):
    model, tx, task, host_state = bn_setup
    step = train.make_train_step(model, task, tx, mesh=meshes[8], precision="bfloat16")
    state = train.replicate(host_state, meshes[8])
    losses = []
    for seed in (1, 2):
        state, m = step(state, random_batch(seed))
        losses.append(host(m["loss"]))
    for tree in (state.params, state.opt_state, state.model_state):
        floats = {x.dtype for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)}
        assert floats == {jnp.dtype(jnp.float32)}
    ref_state, ref_metrics = reference
    for got, ref in zip(losses, ref_metrics, strict=True):
        np.testing.assert_allclose(got[0], ref["loss"][0], rtol=3e-2)
    # The bfloat16 update (params after - before) points where the float32 one does.
    flat = lambda tree: np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])  # noqa: E731
    start = flat(host(host_state.params))
    d16, d32 = flat(host(state.params)) - start, flat(ref_state.params) - start
    assert np.linalg.norm(d16 - d32) < 0.1 * np.linalg.norm(d32)


def test_bfloat16_needs_a_dtype_field():
    import flax.linen as nn

    class NoDtype(nn.Module):
        @nn.compact
        def __call__(self, x, *, train=False):
            return nn.Dense(2)(x.reshape(x.shape[0], -1))

    with pytest.raises(TypeError, match="dtype"):
        train.make_train_step(
            NoDtype(), train.classification(), train.make_optimizer(SGD), precision="bfloat16"
        )


# --------------------------------------------------------------------------- keys and checks


def test_dropout_keys_differ_per_device_and_step_and_are_deterministic(meshes):
    rng = jax.random.key_data(jax.random.key(0))

    @jax.jit
    def keys(rng, step):
        per_device = jax.shard_map(
            lambda r: train.dropout_key(r, step, train.DATA_AXIS)[None],
            mesh=meshes[8],
            in_specs=P(),
            out_specs=P(train.DATA_AXIS),
        )
        return per_device(rng)

    a, again, later = (np.asarray(keys(rng, s)) for s in (3, 3, 4))
    assert len({tuple(k) for k in a}) == 8
    np.testing.assert_array_equal(a, again)
    assert not np.any(np.all(a == later, axis=1))


def test_step_builders_reject_bad_arguments(bn_setup, meshes):
    model, tx, task, _ = bn_setup
    with pytest.raises(ValueError, match="strategy"):
        train.make_train_step(model, task, tx, strategy="pjit", mesh=meshes[8])
    with pytest.raises(ValueError, match="precision"):
        train.make_train_step(model, task, tx, precision="float16", mesh=meshes[8])
    with pytest.raises(TypeError, match="task"):
        train.make_eval_step(model, "classification", mesh=meshes[8])
    with pytest.raises(ValueError, match="multiple"):
        train.shard_batch(random_batch(0, n=12), meshes[8])


def test_model_with_batch_norm_but_no_axis_name_is_refused_under_shard_map(meshes):
    import flax.linen as nn

    class NoAxis(nn.Module):
        @nn.compact
        def __call__(self, x, *, train=False):
            x = nn.BatchNorm(use_running_average=not train)(x)
            return nn.Dense(10)(x.mean(axis=(1, 2)))

    tx = train.make_optimizer(SGD)
    state = train.create_train_state(NoAxis(), tx, 0, (1, *IMAGE), mesh=meshes[8])
    step = train.make_train_step(
        NoAxis(), train.classification(), tx, strategy="shard_map", mesh=meshes[8]
    )
    with pytest.raises(ValueError, match="axis_name"):
        step(state, random_batch(0))
