"""Pooling, Flatten and Dropout layers against Flax's pooling functions and NumPy."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax.layers import (
    AdaptiveAvgPool,
    AdaptiveMaxPool,
    AvgPool,
    Dropout,
    Flatten,
    GlobalAvgPool,
    GlobalMaxPool,
    LpPool,
    MaxPool,
)


def _apply(layer, x, **kwargs):
    return layer.apply({}, x, **kwargs)


X = jax.random.normal(jax.random.key(0), (2, 8, 6, 3))


def test_max_pool_equals_flax():
    y = _apply(MaxPool(3, stride=2, padding=1), X)
    ref = nn.max_pool(X, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    np.testing.assert_allclose(y, ref)


def test_avg_pool_equals_flax():
    y = _apply(AvgPool(2), X)
    np.testing.assert_allclose(y, nn.avg_pool(X, (2, 2), strides=(2, 2)), rtol=1e-6)
    y = _apply(AvgPool(3, stride=1, padding=1, count_include_pad=False), X)
    ref = nn.avg_pool(X, (3, 3), padding=((1, 1), (1, 1)), count_include_pad=False)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


def test_lp_pool_p2_equals_numpy():
    y = _apply(LpPool(2.0, 2), jnp.abs(X))
    x = np.asarray(X)
    ref = np.sqrt((x**2).reshape(2, 4, 2, 3, 2, 3).sum(axis=(2, 4)))
    np.testing.assert_allclose(y, ref, rtol=1e-5)


def test_adaptive_and_global_pools_equal_numpy():
    x = np.asarray(X)
    blocks = x.reshape(2, 4, 2, 3, 2, 3)
    np.testing.assert_allclose(_apply(AdaptiveAvgPool((4, 3)), X), blocks.mean((2, 4)), rtol=1e-5)
    np.testing.assert_allclose(_apply(AdaptiveMaxPool((4, 3)), X), blocks.max((2, 4)))
    np.testing.assert_allclose(_apply(GlobalAvgPool(), X), x.mean((1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_apply(GlobalMaxPool(), X), x.max((1, 2)))


def test_flatten_is_row_major():
    y = _apply(Flatten(), X)
    np.testing.assert_array_equal(y, np.asarray(X).reshape(2, -1))


def test_dropout_only_in_training():
    x = jnp.ones((4, 1000))
    layer = Dropout(0.25)
    np.testing.assert_array_equal(_apply(layer, x), x)
    y = layer.apply({}, x, train=True, rngs={"dropout": jax.random.key(1)})
    kept = np.asarray(y) != 0
    assert 0.7 < kept.mean() < 0.8
    np.testing.assert_allclose(np.asarray(y)[kept], 1 / 0.75, rtol=1e-6)
    with pytest.raises(ValueError, match="rate"):
        Dropout(1.5).apply({}, x)
