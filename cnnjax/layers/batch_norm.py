"""`BatchNorm`: Flax's `nn.BatchNorm` (same fields, variables, names and results) whose
training-mode pass runs `cnnjax.ops.normalization.batch_norm_train`, which has a hand-written
derivative.

Why: autodiff of Flax's formula keeps the centred input ``x - mean`` (a tensor the size of
the activations) for the backward pass and spends extra passes over memory; on the CPU a
ResNet-18 / U-Net training step is dominated by convolutions, and the batch norms are the
largest share of what remains (``python -m benchmarks.train_step --impls
cnnjax,cnnjax~batch_norm`` measures the difference side by side). XLA's buffers for a
CIFAR ResNet-18 training step (batch 64, 32 x 32) drop from 452 to 310 MiB with it.

The hand-written path is taken in training mode for float32 inputs normalised over all axes
but the last, with scale and bias, fast variance and float32 statistics (`make_norm`'s
configuration), without ``axis_name`` (shard_map/pmap synchronise through Flax's own path) and
without a mask. Everything else, initialisation and evaluation included, is `nn.BatchNorm`
itself, so checkpoints, pretrained imports and `nnx.bridge` see the same module.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax.ops import normalization


class BatchNorm(nn.BatchNorm):
    """`nn.BatchNorm` with a faster training pass (see the module docstring)."""

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        use_running_average: bool | None = None,
        *,
        mask: jax.Array | None = None,
    ) -> jax.Array:
        running = nn.merge_param(
            "use_running_average", self.use_running_average, use_running_average
        )
        if running or mask is not None or not self._hand_written_path(x):
            return super().__call__(x, use_running_average, mask=mask)
        features = (x.shape[-1],)
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, features, jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, features, jnp.float32)
        scale = self.param("scale", self.scale_init, features, self.param_dtype)
        bias = self.param("bias", self.bias_init, features, self.param_dtype)
        y, mean, var = normalization.batch_norm_train(x, scale, bias, self.epsilon)
        ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
        ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
        return y

    def _hand_written_path(self, x: jax.Array) -> bool:
        float32 = jnp.dtype(jnp.float32)
        return (
            not self.is_initializing()
            and x.ndim >= 2
            and self.axis in (-1, x.ndim - 1)
            and jnp.dtype(x.dtype) == float32
            and jnp.dtype(self.dtype or x.dtype) == float32
            and jnp.dtype(self.param_dtype) == float32
            and self.use_scale
            and self.use_bias
            and self.use_fast_variance
            and self.force_float32_reductions
            and self.axis_name is None
            and self.axis_index_groups is None
        )
