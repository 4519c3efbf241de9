"""Tiny models of every family: a jit-compiled training step reaches every parameter, train
and eval modes differ where they should, dtype policy, and `summary`."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cnnjax.models as models

# One tiny configuration per family (and per block / up-sampling variant).
TINY = {
    "simple_cnn": (dict(widths=(4, 4, 4), hidden=8), (2, 18, 18, 1)),
    "lenet5": ({}, (2, 16, 16, 1)),
    "cnn1d": (dict(widths=(4, 8)), (2, 16, 1)),
    "cnn3d": (dict(widths=(4, 8), norm="group", num_groups=2), (2, 4, 4, 4, 1)),
    "resnet_tiny": ({}, (2, 8, 8, 3)),
    "resnet_tiny_preact_bottleneck": (
        dict(preactivation=True, block="bottleneck", width=4),
        (2, 8, 8, 3),
    ),
    "resnet_tiny_imagenet_stem": (dict(stem="imagenet", zero_init_last_norm=False), (2, 16, 16, 3)),
    "unet_tiny": ({}, (2, 8, 8, 1)),
    "unet_tiny_valid_resize": (
        dict(padding="valid", upsample="resize", norm="instance"),
        (1, 20, 20, 1),
    ),
    "vgg_tiny": (dict(dropout=0.0), (2, 32, 32, 3)),
    "alexnet_tiny": (dict(dropout=0.0), (2, 63, 63, 3)),
}


def _create(key):
    options, shape = TINY[key]
    name = key if key in models.list_models() else key.split("_tiny")[0] + "_tiny"
    return models.create(name, **options), shape


def _loss_fn(model, params, extra, x, rng):
    out, updates = model.apply(
        {"params": params, **extra},
        x,
        train=True,
        mutable=["batch_stats"],
        rngs={"dropout": rng},
    )
    # A loss whose gradient reaches every logit (for U-Net every pixel) differently.
    weights = jnp.cos(jnp.arange(out.size, dtype=jnp.float32)).reshape(out.shape)
    return jnp.sum(out * weights), updates


@pytest.mark.parametrize("key", sorted(TINY))
def test_training_step_reaches_every_parameter(key):
    model, shape = _create(key)
    x = jax.random.normal(jax.random.key(0), shape)
    variables = jax.jit(model.init)(jax.random.key(1), x)
    params = variables["params"]
    extra = {k: v for k, v in variables.items() if k != "params"}
    grad_fn = jax.jit(jax.grad(functools.partial(_loss_fn, model), has_aux=True))
    grads, updates = grad_fn(params, extra, x, jax.random.key(2))
    flat = jax.tree_util.tree_flatten_with_path(grads)[0]
    assert flat
    for path, g in flat:
        assert np.all(np.isfinite(g)), path
        assert float(jnp.max(jnp.abs(g))) > 0.0, f"zero gradient for {jax.tree_util.keystr(path)}"
    if "batch_stats" in extra:  # a training step updates the running statistics
        before = jax.tree.leaves(extra["batch_stats"])
        after = jax.tree.leaves(updates["batch_stats"])
        assert any(not np.allclose(a, b) for a, b in zip(before, after, strict=True))


def test_batch_norm_train_and_eval_differ_and_state_updates():
    model = models.create("resnet_tiny")
    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 3)) * 2 + 1
    variables = jax.jit(model.init)(jax.random.key(1), x)
    apply = jax.jit(model.apply, static_argnames=("train", "mutable"))
    y_eval = apply(variables, x)
    y_train, _ = apply(variables, x, train=True, mutable=("batch_stats",))
    assert not np.allclose(y_eval, y_train)
    np.testing.assert_array_equal(apply(variables, x), y_eval)  # eval is deterministic


def test_dropout_train_is_random_eval_is_not():
    model = models.create("vgg_tiny", norm="none", dropout=0.5)
    x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
    variables = jax.jit(model.init)(jax.random.key(1), x)

    run = jax.jit(lambda rng: model.apply(variables, x, train=True, rngs={"dropout": rng}))
    a, b = run(jax.random.key(2)), run(jax.random.key(3))
    assert not np.allclose(a, b)
    e1 = jax.jit(lambda: model.apply(variables, x))()
    # Without dropout ("none" norm, so no batch statistics) train == eval exactly.
    no_drop = models.create("vgg_tiny", norm="none", dropout=0.0)
    t = jax.jit(lambda: no_drop.apply(variables, x, train=True))()
    np.testing.assert_allclose(t, e1, rtol=1e-5, atol=1e-6)


def test_bfloat16_compute_float32_params():
    model = models.create("resnet_tiny", dtype=jnp.bfloat16)
    x = jnp.ones((2, 8, 8, 3))
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    assert {a.dtype for a in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
    out = jax.eval_shape(model.apply, variables, x)
    assert out.dtype == jnp.bfloat16


def test_summary_table_and_totals():
    model = models.create("resnet_tiny")
    s = models.summary(model, (1, 32, 32, 3))
    n = sum(
        a.size
        for a in jax.tree.leaves(
            jax.eval_shape(model.init, jax.random.key(0), jnp.ones((1, 32, 32, 3)))["params"]
        )
    )
    assert s.total_params == n
    assert s.rows[0].path == () and s.rows[0].output_shape == (1, 10)
    assert s.rows[0].params == n
    top = [r for r in s.rows if len(r.path) == 1]
    assert sum(r.params for r in top) == n
    rows = {r.path: r for r in s.rows}
    assert rows[("stem_conv",)].params == 3 * 3 * 3 * 8
    assert rows[("stage2_block1",)].output_shape == (1, 16, 16, 16)
    # batch norm: mean and var per channel: stem 8, block1 2*8, block2 3*16.
    assert s.total_batch_stats == 2 * (8 + 2 * 8 + 3 * 16)
    text = str(s)
    assert "stage2_block1" in text and f"Total params: {n:,}" in text
    shallow = models.summary(model, (1, 32, 32, 3), depth=1)
    assert [r.path for r in shallow.rows] == [()] + [r.path for r in top]


def test_summary_of_a_big_model_is_shape_only():
    s = models.summary(models.create("vgg16"), (1, 224, 224, 3), depth=1)
    assert s.total_params == 138_357_544
    assert s.rows[-1].path == ("head",) and s.rows[-1].output_shape == (1, 1000)
    with pytest.raises(ValueError, match="input_shape"):
        models.summary(models.create("vgg16"), (1, 0, 3))


def test_model_with_axis_name_under_shard_map_equals_global_batch():
    """`model.clone(axis_name="data")` inside shard_map over 8 devices: logits and running
    statistics equal the unsharded model on the whole batch (synchronised batch norm)."""
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    n_dev = 8
    model = models.create("resnet_tiny")
    x = jax.random.normal(jax.random.key(0), (2 * n_dev, 8, 8, 3)) + 0.5
    variables = jax.jit(model.init)(jax.random.key(1), x)
    ref, ref_updates = jax.jit(functools.partial(model.apply, train=True, mutable=["batch_stats"]))(
        variables, x
    )
    synced = model.clone(axis_name="data")
    mesh = jax.make_mesh((n_dev,), ("data",))

    @functools.partial(
        jax.shard_map, mesh=mesh, in_specs=(P(), P("data")), out_specs=(P("data"), P())
    )
    def sharded(v, xs):
        return synced.apply(v, xs, train=True, mutable=["batch_stats"])

    out, updates = jax.jit(sharded)(
        jax.device_put(variables, NamedSharding(mesh, P())),
        jax.device_put(x, NamedSharding(mesh, P("data"))),
    )
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
    for a, b in zip(jax.tree.leaves(updates), jax.tree.leaves(ref_updates), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
