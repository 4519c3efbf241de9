"""`batch_norm_train` (hand-written derivative) against independent references:
a NumPy loop for the forward pass, float64 central differences and float64 autodiff of the
textbook formula for the gradients, with smooth losses (no ReLU kinks) and odd sizes, 1D-3D."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax.ops import batch_norm_train, normalization

SHAPES = [(3, 7, 5), (5, 3, 4, 6), (2, 3, 5, 4, 3), (4, 1)]


def _numpy_batch_norm(x, scale, bias, eps):
    """Per channel, with explicit loops over the channels: biased variance."""
    flat = x.reshape(-1, x.shape[-1])
    y = np.empty_like(flat)
    mean = np.empty(x.shape[-1])
    var = np.empty(x.shape[-1])
    for c in range(x.shape[-1]):
        column = flat[:, c]
        mean[c] = column.sum() / column.size
        var[c] = ((column - mean[c]) ** 2).sum() / column.size
        y[:, c] = (column - mean[c]) / np.sqrt(var[c] + eps) * scale[c] + bias[c]
    return y.reshape(x.shape), mean, var


def _textbook(x, scale, bias, eps):
    """Two-pass variance, differentiated by JAX (the reference for float64 gradients)."""
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axes)
    var = jnp.mean((x - mean) ** 2, axes)
    return (x - mean) / jnp.sqrt(var + eps) * scale + bias, mean, var


def _inputs(shape, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 2.5 + 1.5
    scale = rng.uniform(0.5, 1.5, shape[-1])
    bias = rng.standard_normal(shape[-1])
    return x.astype(dtype), scale.astype(dtype), bias.astype(dtype)


def _loss(fn, weights):
    """A smooth scalar of all three outputs, so every cotangent is non-zero."""
    wy, wm, wv = weights

    def loss(x, scale, bias):
        y, mean, var = fn(x, scale, bias, 1e-3)
        return jnp.sum(jnp.sin(y) * wy) + jnp.sum(mean * wm) + jnp.sum(jnp.sqrt(var) * wv)

    return loss


def _weights(shape, seed):
    rng = np.random.default_rng(seed + 100)
    return rng.standard_normal(shape), rng.standard_normal(shape[-1]), rng.standard_normal(
        shape[-1])


@pytest.mark.parametrize("shape", SHAPES)
def test_forward_equals_numpy_loop(shape):
    x, scale, bias = _inputs(shape, 0, np.float32)
    y, mean, var = batch_norm_train(jnp.asarray(x), jnp.asarray(scale), jnp.asarray(bias), 1e-5)
    ref_y, ref_mean, ref_var = _numpy_batch_norm(x.astype(np.float64), scale, bias, 1e-5)
    np.testing.assert_allclose(np.asarray(mean), ref_mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(var), ref_var, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(y), ref_y, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradients_equal_float64_autodiff_of_textbook_formula(shape, seed):
    with jax.enable_x64():
        args = [jnp.asarray(a) for a in _inputs(shape, seed)]
        weights = _weights(shape, seed)
        got = jax.grad(_loss(batch_norm_train, weights), argnums=(0, 1, 2))(*args)
        want = jax.grad(_loss(_textbook, weights), argnums=(0, 1, 2))(*args)
    for g, w, name in zip(got, want, ("x", "scale", "bias"), strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-9, atol=1e-10,
                                   err_msg=name)


def test_gradient_equals_central_differences():
    shape = (3, 4, 2)
    with jax.enable_x64():
        x, scale, bias = (jnp.asarray(a) for a in _inputs(shape, 3))
        loss = _loss(batch_norm_train, _weights(shape, 3))
        grad = np.asarray(jax.grad(loss)(x, scale, bias))
        h = 1e-6
        for index in [(0, 0, 0), (1, 2, 1), (2, 3, 0), (0, 3, 1)]:
            step = jnp.zeros(shape).at[index].set(h)
            numeric = (loss(x + step, scale, bias) - loss(x - step, scale, bias)) / (2 * h)
            np.testing.assert_allclose(grad[index], float(numeric), rtol=1e-6, atol=1e-8)


def _float32_case(seed, offset=0.0):
    """(float64 textbook gradients, float32 loss weights, float32 arguments) of one case,
    the input shifted by `offset`."""
    shape = (16, 9, 9, 8)
    weights = _weights(shape, seed)
    x64, s64, b64 = _inputs(shape, seed)
    x64 = x64 + offset
    with jax.enable_x64():
        want = jax.grad(_loss(_textbook, weights), argnums=(0, 1, 2))(
            jnp.asarray(x64), jnp.asarray(s64), jnp.asarray(b64))
    w32 = tuple(w.astype(np.float32) for w in weights)
    return want, w32, [jnp.asarray(a, jnp.float32) for a in (x64, s64, b64)]


def test_float32_gradients_close_to_float64():
    want, w32, args = _float32_case(4)
    got = jax.jit(jax.grad(_loss(batch_norm_train, w32), argnums=(0, 1, 2)))(*args)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=2e-4,
                                   atol=2e-4 * float(np.abs(w).max()))


@pytest.mark.parametrize("offset", [0.0, 20.0, 100.0])
def test_float32_error_for_a_large_mean_no_worse_than_autodiff(offset):
    """The backward pass takes sum(gy * (x - mean)) as sum(gy * x) - mean * sum(gy); with a
    mean far above the standard deviation its float32 error stays that of autodiff of the
    same formula (dominated by the fast variance of the forward pass)."""
    for seed in (4, 5):
        want, w32, args = _float32_case(seed, offset)
        ours = jax.jit(jax.grad(_loss(batch_norm_train, w32), argnums=(0, 1, 2)))(*args)
        autodiff = jax.jit(jax.grad(_loss(lambda *a: normalization._forward(*a)[0], w32),
                                    argnums=(0, 1, 2)))(*args)
        for g, a, w in zip(ours, autodiff, want, strict=True):
            error = float(np.abs(np.asarray(g) - np.asarray(w)).max())
            reference = float(np.abs(np.asarray(a) - np.asarray(w)).max())
            assert error <= 1.5 * reference + 1e-6 * float(np.abs(w).max()), (seed, error,
                                                                               reference)


def test_constant_channel_has_finite_zero_variance_gradient():
    """A channel with one value everywhere (a dead ReLU channel): var is 0, gradients finite."""
    x = jnp.concatenate([jnp.zeros((6, 3, 1)), jnp.linspace(-1, 1, 18).reshape(6, 3, 1)], -1)
    grads = jax.grad(lambda x: jnp.sum(jnp.sin(batch_norm_train(x, jnp.ones(2), jnp.zeros(2),
                                                                1e-5)[0])))(x)
    assert bool(jnp.all(jnp.isfinite(grads)))
