"""Overlapping pooling must be differentiable under jit (ResNet/AlexNet stems use 3x3/2 pools)."""

import jax
import jax.numpy as jnp
import numpy as np

from cnnjax import ops


def test_overlapping_pools_differentiate_under_jit():
    x = jax.random.normal(jax.random.key(0), (2, 9, 9, 3))

    def loss(x):
        return (
            ops.max_pool(x, 3, stride=2, padding=1).sum()
            + ops.avg_pool(x, 3, stride=2, padding=1, count_include_pad=False).sum()
        )

    eager = jax.grad(loss)(x)
    jitted = jax.jit(jax.grad(loss))(x)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=1e-6, atol=1e-6)
    # Each of the 25 max windows routes its unit gradient to exactly one input pixel.
    max_only = jax.jit(jax.grad(lambda x: ops.max_pool(x, 3, stride=2, padding=1).sum()))(x)
    assert float(jnp.sum(max_only)) == 2 * 3 * 25
