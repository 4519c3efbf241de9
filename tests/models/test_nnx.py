"""`cnnjax.nnx`: the zoo as NNX modules gives the Linen zoo's logits (eval and train mode,
batch statistics updated alike), one optimizer step equal to the Linen step, and variables
and Orbax checkpoints interchangeable with the Linen zoo."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx, traverse_util

import cnnjax.nnx as cnnx
from cnnjax import models

# (name, options, input shape): small inputs; resnet18 with the CIFAR stem on 32x32
CASES = [
    ("simple_cnn", {"num_classes": 5}, (4, 28, 28, 1)),
    ("lenet5", {"num_classes": 5}, (4, 32, 32, 1)),
    ("resnet18", {"num_classes": 5, "stem": "cifar"}, (2, 32, 32, 3)),
    ("unet_tiny", {"num_classes": 3}, (2, 16, 16, 3)),
    ("cnn2d", {"num_classes": 4, "widths": (8, 16), "dropout": 0.5}, (4, 16, 16, 3)),
]
IDS = [c[0] for c in CASES]


def _flat(tree) -> dict:
    return traverse_util.flatten_dict(jax.device_get(dict(tree)))


def _bitwise(a, b) -> None:
    fa, fb = _flat(a), _flat(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        assert np.asarray(fa[k]).tobytes() == np.asarray(fb[k]).tobytes(), k


def _setup(name, options, shape):
    model = cnnx.create(name, input_shape=shape, rngs=nnx.Rngs(0), **options)
    linen = models.create(name, **options)
    x = jax.random.normal(jax.random.key(1), shape)
    return model, linen, x


@pytest.mark.parametrize(("name", "options", "shape"), CASES, ids=IDS)
def test_same_logits_as_linen_in_eval_and_train_mode(name, options, shape):
    model, linen, x = _setup(name, options, shape)
    variables = cnnx.to_linen_variables(model)
    assert jax.tree.structure(variables) == jax.tree.structure(
        jax.eval_shape(lambda: linen.init(jax.random.key(0), x)))  # the Linen layout
    key = jax.random.key(7)
    expected, updates = linen.apply(variables, x, train=True, rngs={"dropout": key},
                                    mutable=["batch_stats"])
    assert model.use_running_average is False  # NNX modules start in train mode
    np.testing.assert_array_equal(model(x, dropout_key=key), expected)
    after = cnnx.to_linen_variables(model)
    if "batch_stats" in variables:
        _bitwise(after["batch_stats"], updates["batch_stats"])  # updated in place, alike
    model.eval()
    np.testing.assert_array_equal(model(x), linen.apply(after, x, train=False))
    if name == "cnn2d":  # dropout: another key, other masks
        model.train()
        assert not np.array_equal(model(x, dropout_key=jax.random.key(8)), expected)


def _linen_step(linen, tx, variables, opt_state, x, y):
    def loss_fn(params):
        logits, updates = linen.apply({**variables, "params": params}, x, train=True,
                                      mutable=["batch_stats"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, updates

    (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])
    step, opt_state = tx.update(grads, opt_state, variables["params"])
    return loss, {**variables, **updates, "params": optax.apply_updates(variables["params"],
                                                                         step)}


@nnx.jit
def _nnx_step(model, optimizer, x, y):
    def loss_fn(model):
        logits = model(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss


@pytest.mark.parametrize(("name", "options", "shape"), CASES[:4], ids=IDS[:4])
def test_one_training_step_equals_the_linen_step(name, options, shape):
    """Same ops in the same order; only XLA's fusion may differ, so float32 agrees to rounding
    (rtol 1e-5 per leaf; a ReLU kink would flip a whole gradient entry, far above it)."""
    model, linen, x = _setup(name, options, shape)
    y = jnp.arange(shape[0]) % options["num_classes"]
    if name == "unet_tiny":
        y = jnp.broadcast_to(y[:, None, None], shape[:3])
    tx = optax.sgd(0.1, momentum=0.9)
    variables = jax.tree.map(jnp.copy, cnnx.to_linen_variables(model))
    loss, expected = jax.jit(_linen_step, static_argnums=(0, 1))(
        linen, tx, variables, tx.init(variables["params"]), x, y)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    nnx_loss = _nnx_step(model, optimizer, x, y)
    np.testing.assert_allclose(nnx_loss, loss, rtol=1e-6)
    got = _flat(cnnx.to_linen_variables(model))
    moved = 0
    for key, value in _flat(expected).items():
        np.testing.assert_allclose(got[key], value, rtol=1e-5, atol=1e-6, err_msg=str(key))
        moved += not np.array_equal(value, _flat(variables)[key])
    assert moved > len(got) // 2  # the step changed the weights (and batch statistics)


@pytest.mark.parametrize(("name", "options", "shape"), CASES, ids=IDS)
def test_linen_variables_round_trip_through_nnx_bitwise(name, options, shape):
    model, linen, x = _setup(name, options, shape)
    source = linen.init(jax.random.key(42), x)  # other values than the module's own
    source = jax.tree.map(lambda v: v + 0.5, source)
    cnnx.from_linen_variables(model, source)
    _bitwise(cnnx.to_linen_variables(model), source)
    state = nnx.state(model, nnx.Param)  # NNX paths = Linen paths without the collection
    assert set(_flat(nnx.to_pure_dict(state))) == set(_flat(source["params"]))


def test_one_orbax_checkpoint_loads_in_linen_and_nnx(tmp_path):
    import orbax.checkpoint as ocp

    model, linen, x = _setup("resnet18", {"num_classes": 5, "stem": "cifar"}, (2, 32, 32, 3))
    variables = jax.tree.map(lambda v: v * 0.5 + 0.1, linen.init(jax.random.key(3), x))
    with ocp.StandardCheckpointer() as ckpt:  # a Linen user's checkpoint
        ckpt.save(tmp_path / "linen", variables)
    cnnx.load_linen_checkpoint(model, tmp_path / "linen")
    _bitwise(cnnx.to_linen_variables(model), variables)
    model.eval()
    np.testing.assert_array_equal(model(x), linen.apply(variables, x))
    cnnx.save_linen_checkpoint(tmp_path / "nnx", model)  # and back, read by plain Orbax
    with ocp.StandardCheckpointer() as ckpt:
        restored = ckpt.restore(tmp_path / "nnx", jax.tree.map(
            lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=v.sharding), variables))
    _bitwise(restored, variables)


def test_clear_errors():
    model = cnnx.create("simple_cnn", input_shape=(1, 28, 28, 1), num_classes=3)
    wrong = models.create("simple_cnn", num_classes=4).init(jax.random.key(0),
                                                             jnp.zeros((1, 28, 28, 1)))
    with pytest.raises(ValueError, match=r"params/logits/kernel: model \(64, 3\) float32, "
                                         r"given \(64, 4\) float32"):
        cnnx.from_linen_variables(model, wrong)
    with pytest.raises(ValueError, match=r"input_shape=\(28, 28, -1\)"):
        cnnx.create("simple_cnn", input_shape=(28, 28, -1))
    with pytest.raises(TypeError, match="unknown option"):
        cnnx.create("simple_cnn", input_shape=(1, 28, 28, 1), widht=3)
    model.eval()
    model.set_attributes(deterministic=False)  # BN frozen, dropout on: not one flag
    with pytest.raises(ValueError, match=r"use model.train\(\) or model.eval\(\)"):
        model(jnp.zeros((1, 28, 28, 1)))
