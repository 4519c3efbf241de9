"""Normalization by name (incl. batch norm synchronised across devices) and the blocks."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from cnnjax.layers import (
    NORMS,
    BasicBlock,
    Bottleneck,
    ConvNormAct,
    DoubleConv,
    PreActBasicBlock,
    PreActBottleneck,
    UNetUp,
    center_crop,
    make_norm,
    pad_to,
)

X = jax.random.normal(jax.random.key(0), (4, 6, 5, 8)) * 3.0 + 1.0


def _init_apply(module, x, train=False):
    """Variables and output, jit-compiled (one compile beats op-by-op dispatch)."""
    variables = jax.jit(module.init)(jax.random.key(1), x)
    if train:
        y, _ = jax.jit(functools.partial(module.apply, mutable=["batch_stats"]))(variables, x)
    else:
        y = jax.jit(module.apply)(variables, x)
    return variables, y


def _shapes(module, *args):
    """Variables and output as shapes only (jax.eval_shape: nothing is computed)."""
    variables = jax.eval_shape(module.init, jax.random.key(1), *args)
    return variables, jax.eval_shape(module.apply, variables, *args)


def test_norm_names_and_errors():
    assert NORMS == ("batch", "group", "layer", "instance", "none")
    assert make_norm("none", train=True) is None
    with pytest.raises(ValueError, match="'batch', 'group', 'layer', 'instance', 'none'"):
        make_norm("batchnorm", train=True)


@pytest.mark.parametrize(
    ("name", "axes"),
    [("batch", (0, 1, 2)), ("group", None), ("layer", (1, 2, 3)), ("instance", (1, 2))],
)
def test_norms_normalise_over_their_axes(name, axes):
    """At init (scale 1, bias 0) the output has mean 0 and variance 1 over the norm's axes."""
    norm = make_norm(name, train=True, num_groups=2, epsilon=1e-6)(name="n")
    _, y = _init_apply(norm, X, train=name == "batch")
    y = np.asarray(y, np.float64)
    if axes is None:  # group: 2 groups of 4 channels, per sample
        y = y.reshape(4, 6, 5, 2, 4).transpose(0, 3, 1, 2, 4).reshape(4, 2, -1)
        axes = (2,)
    np.testing.assert_allclose(y.mean(axis=axes), 0.0, atol=1e-4)
    np.testing.assert_allclose(y.var(axis=axes), 1.0, rtol=1e-3)


def test_group_norm_groups_must_divide_channels():
    norm = make_norm("group", train=False, num_groups=3)(name="n")
    with pytest.raises(ValueError, match="groups"):
        norm.init(jax.random.key(0), X)


def test_batch_norm_train_and_eval_differ():
    norm = make_norm("batch", train=True)(name="n")
    variables, y_train = _init_apply(norm, X, train=True)
    y_eval = make_norm("batch", train=False)(name="n").apply(variables, X)
    # Eval uses the running statistics (mean 0, var 1 at init): the input passes unchanged.
    np.testing.assert_allclose(y_eval, X / np.sqrt(1 + 1e-5), rtol=1e-5)
    assert not np.allclose(y_train, y_eval)


def test_batch_norm_synchronised_across_devices_equals_global_batch():
    """shard_map over 8 devices with axis_name: outputs and running statistics equal batch
    norm of the whole batch at once (means of E[x] and E[x^2] across devices)."""
    n_dev = 8
    assert jax.device_count() >= n_dev
    x = jax.random.normal(jax.random.key(3), (2 * n_dev, 3, 3, 4)) * 2 + 0.5
    local = make_norm("batch", train=True, axis_name="data")(name="bn")
    variables = local.init(jax.random.key(0), x[:2])
    mesh = jax.make_mesh((n_dev,), ("data",))

    @functools.partial(
        jax.shard_map, mesh=mesh, in_specs=(P(), P("data")), out_specs=(P("data"), P())
    )
    def sharded(v, xs):
        y, updates = local.apply(v, xs, mutable=["batch_stats"])
        return y, updates["batch_stats"]

    x_sharded = jax.device_put(x, NamedSharding(mesh, P("data")))
    v_replicated = jax.device_put(variables, NamedSharding(mesh, P()))
    y, stats = jax.jit(sharded)(v_replicated, x_sharded)
    glob = make_norm("batch", train=True)(name="bn")
    y_ref, upd_ref = glob.apply(variables, x, mutable=["batch_stats"])
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    for key in ("mean", "var"):
        np.testing.assert_allclose(stats[key], upd_ref["batch_stats"][key], rtol=1e-5, atol=1e-6)
    # Independent check of the running mean against NumPy: 0.9 * 0 + 0.1 * batch mean.
    np.testing.assert_allclose(stats["mean"], 0.1 * np.asarray(x).mean((0, 1, 2)), rtol=1e-4)


def test_conv_norm_act_pool():
    block = ConvNormAct(5, 3, norm=make_norm("batch", train=False), pool=2)
    variables, y = _init_apply(block, X)
    assert y.shape == (4, 3, 2, 5)
    assert "bias" not in variables["params"]["conv"]  # the norm's shift replaces it
    assert float(jnp.min(y)) >= 0.0
    variables, _ = _init_apply(ConvNormAct(5, 3), X)
    assert "bias" in variables["params"]["conv"]


@pytest.mark.parametrize(
    ("block", "features", "stride", "out_shape", "projection"),
    [
        (BasicBlock, 8, 1, (4, 6, 5, 8), False),
        (BasicBlock, 16, 2, (4, 3, 3, 16), True),
        (Bottleneck, 2, 1, (4, 6, 5, 8), False),
        (Bottleneck, 4, 2, (4, 3, 3, 16), True),
        (PreActBasicBlock, 8, 2, (4, 3, 3, 8), True),
        (PreActBottleneck, 2, 1, (4, 6, 5, 8), False),
    ],
)
def test_residual_blocks_shapes_and_projection(block, features, stride, out_shape, projection):
    module = block(features, stride, norm=make_norm("batch", train=False))
    variables, y = _shapes(module, X)
    assert y.shape == out_shape
    assert ("proj_conv" in variables["params"]) == projection


def test_bottleneck_v15_strides_the_3x3_conv():
    module = Bottleneck(4, 2, norm=make_norm("batch", train=False))
    variables = jax.jit(module.init)(jax.random.key(0), X)
    params = variables["params"]
    assert params["conv1"]["kernel"].shape == (1, 1, 8, 4)
    assert params["conv2"]["kernel"].shape == (3, 3, 4, 4)
    inter = module.apply(variables, X, capture_intermediates=True, mutable=["intermediates"])[1]
    assert inter["intermediates"]["conv1"]["__call__"][0].shape == (4, 6, 5, 4)
    assert inter["intermediates"]["conv2"]["__call__"][0].shape == (4, 3, 3, 4)


def test_zero_init_last_makes_blocks_identity_at_init():
    norm = make_norm("batch", train=False)
    _, y = _init_apply(BasicBlock(8, norm=norm, zero_init_last=True), X)
    np.testing.assert_allclose(y, jax.nn.relu(X), rtol=1e-6)
    _, y = _init_apply(PreActBottleneck(2, norm=norm, zero_init_last=True), X)
    np.testing.assert_allclose(y, X, rtol=1e-6)


def test_crop_and_pad_helpers():
    x = jnp.arange(2 * 7 * 6 * 1, dtype=jnp.float32).reshape(2, 7, 6, 1)
    np.testing.assert_array_equal(center_crop(x, (3, 2)), np.asarray(x)[:, 2:5, 2:4])
    y = pad_to(x, (10, 7))
    assert y.shape == (2, 10, 7, 1)
    np.testing.assert_array_equal(np.asarray(y)[:, 1:8, 0:6], x)
    assert float(jnp.abs(y).sum()) == float(jnp.abs(x).sum())


@pytest.mark.parametrize(
    ("padding", "upsample", "x_shape", "skip_shape", "out_shape"),
    [
        ("valid", "transpose", (1, 6, 6, 8), (1, 17, 16, 4), (1, 8, 8, 4)),
        ("same", "transpose", (1, 3, 3, 8), (1, 7, 6, 4), (1, 7, 6, 4)),
        ("same", "resize", (1, 4, 3, 8), (1, 8, 6, 4), (1, 8, 6, 4)),
    ],
)
def test_unet_up_stage_shapes(padding, upsample, x_shape, skip_shape, out_shape):
    module = UNetUp(4, padding=padding, upsample=upsample)
    _, y = _shapes(module, jnp.ones(x_shape), jnp.ones(skip_shape))
    assert y.shape == out_shape


def test_double_conv_valid_shrinks_by_four_in_1d_and_3d():
    for shape, out in [((1, 12, 2), (1, 8, 3)), ((1, 6, 7, 8, 2), (1, 2, 3, 4, 3))]:
        _, y = _shapes(DoubleConv(3, padding="valid"), jnp.ones(shape))
        assert y.shape == out
