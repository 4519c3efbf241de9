"""Optimizers and schedules from config against hand-written update rules and formulas."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from cnnjax import train


def toy_params():
    rng = np.random.default_rng(0)
    return {
        "backbone": {
            "conv": {"kernel": rng.normal(size=(3, 3, 2, 4)), "bias": rng.normal(size=(4,))},
            "norm": {"scale": rng.normal(size=(4,)), "bias": rng.normal(size=(4,))},
        },
        "head": {"kernel": rng.normal(size=(4, 3)), "bias": rng.normal(size=(3,))},
    }


def as_jnp(tree):
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tree)


def run(tx, params, grads_seq):
    """Apply `tx` to successive gradients; returns the params after each update (numpy)."""
    params = as_jnp(params)
    state = tx.init(params)
    out = []
    for grads in grads_seq:
        updates, state = tx.update(as_jnp(grads), state, params)
        params = optax.apply_updates(params, updates)
        out.append(jax.tree.map(np.asarray, params))
    return out


def leaf(tree, path):
    for key in path.split("/"):
        tree = tree[key]
    return np.asarray(tree, np.float64)


def grads_like(params, seed):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda p: rng.normal(size=np.shape(p)), params)


# --------------------------------------------------------------------------- update rules


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_matches_pytorch_rule(nesterov):
    params = toy_params()
    grads = [grads_like(params, s) for s in (1, 2, 3)]
    cfg = {"name": "nesterov" if nesterov else "momentum", "learning_rate": 0.1, "momentum": 0.8}
    got = run(train.make_optimizer(cfg), params, grads)
    for path in ("head/kernel", "backbone/conv/bias"):
        p, buf = leaf(params, path), 0.0
        for t, g in enumerate(grads):
            g = leaf(g, path)
            buf = 0.8 * buf + g
            p = p - 0.1 * (g + 0.8 * buf if nesterov else buf)
            np.testing.assert_allclose(leaf(got[t], path), p, rtol=1e-5, atol=1e-6)


def test_adam_matches_closed_form_with_bias_correction():
    params = toy_params()
    grads = [grads_like(params, s) for s in (4, 5)]
    got = run(train.make_optimizer({"name": "adam", "learning_rate": 0.01}), params, grads)
    p, m, v = leaf(params, "head/kernel"), 0.0, 0.0
    for t, g in enumerate(grads, start=1):
        g = leaf(g, "head/kernel")
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        p = p - 0.01 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        np.testing.assert_allclose(leaf(got[t - 1], "head/kernel"), p, rtol=1e-5, atol=1e-7)


def test_sgd_l2_weight_decay_skips_biases_and_norm_scales():
    params = toy_params()
    zero = jax.tree.map(np.zeros_like, params)
    cfg = {"name": "sgd", "learning_rate": 0.5, "weight_decay": 0.1}
    (after,) = run(train.make_optimizer(cfg), params, [zero])
    for path in ("head/kernel", "backbone/conv/kernel"):  # ndim > 1: p - lr * wd * p
        np.testing.assert_allclose(leaf(after, path), leaf(params, path) * (1 - 0.05), rtol=1e-6)
    for path in ("head/bias", "backbone/conv/bias", "backbone/norm/scale", "backbone/norm/bias"):
        np.testing.assert_allclose(leaf(after, path), leaf(params, path), rtol=1e-7)


@pytest.mark.parametrize("name", ["adamw", "lamb", "lars", "adam", "nesterov"])
def test_weight_decay_mask_for_every_optimizer(name):
    params = toy_params()
    zero = jax.tree.map(np.zeros_like, params)
    (after,) = run(
        train.make_optimizer({"name": name, "learning_rate": 0.1, "weight_decay": 0.1}),
        params,
        [zero],
    )
    for path in ("head/bias", "backbone/norm/scale", "backbone/norm/bias"):
        np.testing.assert_array_equal(leaf(after, path), leaf(params, path).astype(np.float32))
    assert np.all(np.abs(leaf(after, "head/kernel")) < np.abs(leaf(params, "head/kernel")))
    if name == "adamw":  # decoupled: p - lr * wd * p, the Adam part is 0 for zero gradients
        np.testing.assert_allclose(
            leaf(after, "head/kernel"), leaf(params, "head/kernel") * (1 - 0.01), rtol=1e-6
        )


def test_grad_clip_norm_scales_global_norm():
    params = {"a": np.ones((2, 2)), "b": np.ones((3,))}
    grads = {"a": np.full((2, 2), 3.0), "b": np.full((3,), 4.0)}  # norm sqrt(36 + 48)
    cfg = {"name": "sgd", "learning_rate": 1.0, "grad_clip_norm": 2.0}
    (after,) = run(train.make_optimizer(cfg), params, [grads])
    norm = math.sqrt(36 + 48)
    np.testing.assert_allclose(after["a"], 1 - 3.0 * 2.0 / norm, rtol=1e-6)
    np.testing.assert_allclose(after["b"], 1 - 4.0 * 2.0 / norm, rtol=1e-6)


def test_freeze_patterns_keep_parameters_and_skip_their_decay():
    params = toy_params()
    grads = [grads_like(params, 7)]
    cfg = ml_collections.ConfigDict(
        {"name": "adamw", "learning_rate": 0.1, "weight_decay": 0.1, "freeze": ["backbone/*"]}
    )
    (after,) = run(train.make_optimizer(cfg), params, grads)
    for path in ("backbone/conv/kernel", "backbone/conv/bias", "backbone/norm/scale"):
        np.testing.assert_array_equal(leaf(after, path), leaf(params, path).astype(np.float32))
    for path in ("head/kernel", "head/bias"):
        assert np.max(np.abs(leaf(after, path) - leaf(params, path))) > 1e-3
    with pytest.raises(ValueError, match="matches no parameter"):
        train.make_optimizer({"name": "sgd", "learning_rate": 0.1, "freeze": ["encoder/*"]}).init(
            as_jnp(params)
        )


def test_accumulate_steps_updates_every_k_with_mean_gradient():
    params = {"w": np.array([1.0, -2.0])}
    grads = [{"w": np.array([1.0, 2.0])}, {"w": np.array([3.0, -4.0])}]
    cfg = {"name": "sgd", "learning_rate": 0.5, "accumulate_steps": 2}
    first, second = run(train.make_optimizer(cfg), params, grads)
    np.testing.assert_array_equal(first["w"], params["w"])
    np.testing.assert_allclose(second["w"], params["w"] - 0.5 * np.array([2.0, -1.0]))


def test_config_errors_name_the_field_and_the_choices():
    with pytest.raises(ValueError, match=r"'rmsprop'.*lars.*sgd"):
        train.make_optimizer({"name": "rmsprop", "learning_rate": 0.1})
    with pytest.raises(ValueError, match="learing_rate"):
        train.make_optimizer({"name": "sgd", "learing_rate": 0.1})
    with pytest.raises(ValueError, match=r"'linear'.*one_cycle"):
        train.make_schedule({"learning_rate": 0.1, "schedule": "linear"})
    with pytest.raises(ValueError, match="total_steps"):
        train.make_schedule({"learning_rate": 0.1, "schedule": "cosine"})
    with pytest.raises(ValueError, match="weight_decay"):
        train.make_optimizer({"name": "sgd", "learning_rate": 0.1, "weight_decay": -1})


# --------------------------------------------------------------------------- schedules


def at(schedule, steps):
    return [float(schedule(s)) for s in steps]


def test_constant_with_linear_warmup():
    s = train.make_schedule({"learning_rate": 0.4, "warmup_steps": 4})
    np.testing.assert_allclose(at(s, [0, 1, 2, 4, 100]), [0.0, 0.1, 0.2, 0.4, 0.4], rtol=1e-6)


@pytest.mark.parametrize("name", ["cosine", "warmup_cosine"])
def test_cosine_schedules_match_formula(name):
    lr, final, warmup, total = 0.2, 0.02, 10, 110
    cfg = {
        "learning_rate": lr,
        "schedule": name,
        "final_learning_rate": final,
        "warmup_steps": warmup,
    }
    s = train.make_schedule(cfg, total)
    for t in (0, 5, 10, 35, 60, 109, 110, 200):
        if t < warmup:
            ref = lr * t / warmup
        else:
            frac = min(t - warmup, total - warmup) / (total - warmup)
            ref = final + (lr - final) * 0.5 * (1 + math.cos(math.pi * frac))
        assert float(s(t)) == pytest.approx(ref, rel=1e-5, abs=1e-8), t


def test_step_schedule_boundaries_and_step_size():
    s = train.make_schedule({"learning_rate": 1.0, "schedule": "step", "boundaries": [3, 6]})
    np.testing.assert_allclose(at(s, [0, 2, 3, 5, 6, 50]), [1, 1, 0.1, 0.1, 0.01, 0.01], rtol=1e-6)
    s = train.make_schedule(
        {"learning_rate": 1.0, "schedule": "step", "step_size": 4, "decay_factor": 0.5},
        total_steps=12,
    )
    np.testing.assert_allclose(at(s, [3, 4, 8, 11]), [1, 0.5, 0.25, 0.25], rtol=1e-6)


def test_one_cycle_starts_peaks_and_ends_where_documented():
    s = train.make_schedule({"learning_rate": 1.0, "schedule": "one_cycle"}, total_steps=100)
    assert float(s(0)) == pytest.approx(1.0 / 25)
    assert float(s(30)) == pytest.approx(1.0)
    assert float(s(100)) == pytest.approx(1.0 / 25 / 1e4, rel=1e-3)
    assert max(at(s, range(101))) == pytest.approx(1.0)


def test_optimizer_follows_its_schedule():
    cfg = {"name": "sgd", "learning_rate": 1.0, "schedule": "step", "boundaries": [1]}
    params = {"w": np.zeros(1)}
    grads = [{"w": np.ones(1)}] * 2
    first, second = run(train.make_optimizer(cfg), params, grads)
    np.testing.assert_allclose([first["w"][0], second["w"][0]], [-1.0, -1.1], rtol=1e-6)


def test_lr_multipliers_scale_updates_exactly():
    """First matching pattern wins; multipliers that are powers of two make the scaled updates
    bit-identical to a reference optimizer run at learning_rate * multiplier."""
    params = toy_params()
    rng = np.random.default_rng(1)
    grads = [jax.tree.map(lambda p: rng.normal(size=p.shape), params) for _ in range(3)]
    cfg = {"name": "adamw", "learning_rate": 0.1, "weight_decay": 0.05,
           "lr_multipliers": [("head/*", 1.0), ("backbone/conv/*", 0.25), ("*", 0.5)]}
    got = run(train.make_optimizer(cfg), params, grads)[-1]
    for lr, path in ((0.1, ("head",)), (0.025, ("backbone", "conv")), (0.05, ("backbone", "norm"))):
        ref = run(optax.adamw(lr, weight_decay=0.05, mask=train.decay_mask), params, grads)[-1]
        a, b = got, ref
        for part in path:
            a, b = a[part], b[part]
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=f"{path} {name}")


@pytest.mark.parametrize("bad", [[("nothing/*", 0.1)], [("head/*", -1.0)], [("head/*",)]])
def test_lr_multipliers_reject_bad_entries(bad):
    with pytest.raises(ValueError, match="lr_multipliers"):
        train.make_optimizer({"name": "sgd", "learning_rate": 0.1,
                              "lr_multipliers": bad}).init(as_jnp(toy_params()))
