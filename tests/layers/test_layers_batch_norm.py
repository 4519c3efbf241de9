"""`cnnjax.layers.batch_norm.BatchNorm` is `nn.BatchNorm`: same variables, outputs, running
statistics and gradients; its fallbacks are `nn.BatchNorm` bit for bit; a batch sharded over
8 devices under jit gives the statistics of the whole batch."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from cnnjax.layers import make_norm
from cnnjax.layers.batch_norm import BatchNorm
from cnnjax.layers.blocks import BasicBlock

X = jax.random.normal(jax.random.key(0), (8, 5, 3, 6)) * 2.0 + 0.7
G = jax.random.normal(jax.random.key(1), X.shape)


def _variables(x=X):
    v = nn.BatchNorm(use_running_average=False).init(jax.random.key(0), x)
    c = x.shape[-1]
    return {"params": {"scale": jnp.linspace(0.5, 1.5, c), "bias": jnp.linspace(-1, 1, c)},
            "batch_stats": {"mean": jnp.full(c, 0.2), "var": jnp.full(c, 1.3)}} | {
        k: v[k] for k in v if k not in ("params", "batch_stats")}


def _train(module, variables, x=X):
    """(output, new batch stats, gradients of a smooth loss w.r.t. params and input)."""

    def loss(params, x):
        y, new = module.apply({"params": params, "batch_stats": variables["batch_stats"]}, x,
                              mutable=["batch_stats"])
        return jnp.sum(jnp.tanh(y) * G[: x.shape[0]]), (y, new["batch_stats"])

    (_, (y, stats)), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(
        variables["params"], x)
    return y, stats, grads


def _close(a, b, tol=2e-6):
    for u, w in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(w), rtol=tol, atol=tol)


def test_same_variables_as_flax():
    ours = BatchNorm(use_running_average=False).init(jax.random.key(0), X)
    flax = nn.BatchNorm(use_running_average=False).init(jax.random.key(0), X)
    assert jax.tree.map(jnp.shape, ours) == jax.tree.map(jnp.shape, flax)
    _close(ours, flax, 0)


@pytest.mark.parametrize("momentum, epsilon", [(0.9, 1e-5), (0.99, 1e-3)])
def test_training_step_equals_flax(momentum, epsilon):
    kwargs = dict(use_running_average=False, momentum=momentum, epsilon=epsilon)
    variables = _variables()
    y, stats, grads = _train(BatchNorm(**kwargs), variables)
    ref_y, ref_stats, ref_grads = _train(nn.BatchNorm(**kwargs), variables)
    _close(y, ref_y)
    _close(stats, ref_stats)
    _close(grads, ref_grads, 1e-5)


def test_make_norm_batch_builds_it():
    norm = make_norm("batch", train=True)(name="bn")
    assert isinstance(norm, BatchNorm) and isinstance(norm, nn.BatchNorm)


@pytest.mark.parametrize(
    "kwargs, x",
    [
        (dict(use_running_average=True), X),  # evaluation
        (dict(use_running_average=False, dtype=jnp.bfloat16), X),
        (dict(use_running_average=False), X.astype(jnp.bfloat16)),
        (dict(use_running_average=False, use_fast_variance=False), X),
        (dict(use_running_average=False, axis=1), X),
        (dict(use_running_average=False, use_bias=False), X),
    ],
)
def test_other_configurations_are_flax_bit_for_bit(kwargs, x):
    variables = nn.BatchNorm(**kwargs).init(jax.random.key(0), x)
    ours = BatchNorm(**kwargs).apply(variables, x, mutable=["batch_stats"])
    flax = nn.BatchNorm(**kwargs).apply(variables, x, mutable=["batch_stats"])
    _close(ours, flax, 0)


def test_axis_name_path_is_flax_under_vmap():
    """With `axis_name`, statistics are averaged over the named axis (Flax's own path)."""
    kwargs = dict(use_running_average=False, axis_name="d")
    xs = X.reshape(2, 4, *X.shape[1:])
    variables = nn.BatchNorm(**kwargs).init(jax.random.key(0), xs[0])

    def run(cls):
        return jax.vmap(lambda x: cls(**kwargs).apply(variables, x, mutable=["batch_stats"]),
                        axis_name="d")(xs)

    _close(run(BatchNorm), run(nn.BatchNorm), 0)
    y, _ = run(BatchNorm)
    whole = nn.BatchNorm(use_running_average=False).apply(variables, X, mutable=["batch_stats"])
    _close(y.reshape(X.shape), whole[0], 1e-5)


def test_batch_sharded_over_eight_devices_uses_global_statistics():
    mesh = jax.make_mesh((8,), ("data",))
    x = jax.device_put(X, NamedSharding(mesh, P("data")))
    variables = _variables()
    y, stats, grads = _train(BatchNorm(use_running_average=False), variables, x)
    ref_y, ref_stats, ref_grads = _train(nn.BatchNorm(use_running_average=False), variables)
    _close(y, ref_y)
    _close(stats, ref_stats)
    _close(grads, ref_grads, 1e-5)


class _ResidualStack(nn.Module):
    """Two ResNet basic blocks (four conv -> batch norm pairs, residual adds, ReLU)."""

    norm: type

    @nn.compact
    def __call__(self, x):
        for _ in range(2):
            x = BasicBlock(16, norm=functools.partial(self.norm, use_running_average=False))(x)
        return x


def _train_step_temp_bytes(norm):
    x = jax.random.normal(jax.random.key(2), (16, 24, 24, 16))
    model = _ResidualStack(norm)
    variables = model.init(jax.random.key(0), x)

    def loss(params):
        y, _ = model.apply({**variables, "params": params}, x, mutable=["batch_stats"])
        return jnp.sum(jnp.sin(y))

    compiled = jax.jit(jax.grad(loss)).lower(variables["params"]).compile()
    return compiled.memory_analysis().temp_size_in_bytes, x.size * 4


def test_training_keeps_fewer_activation_sized_buffers_than_flax():
    """The reason for the hand-written derivative: a training step's buffers hold about one
    activation-sized tensor less per batch norm than autodiff of Flax's formula, which also
    writes out x - mean (4 batch norms here; 9 against 13 activations when written)."""
    ours, activation = _train_step_temp_bytes(BatchNorm)
    flax, _ = _train_step_temp_bytes(nn.BatchNorm)
    assert ours <= flax - 3 * activation, (ours / activation, flax / activation)
