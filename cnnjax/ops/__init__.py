"""Pure array functions for CNNs (no parameters, no Flax): convolution, transposed
convolution, pooling, convolution arithmetic, training-mode batch norm;
channels-last, 1D/2D/3D, usable under `jax.jit`, `jax.grad` and `jax.vmap`."""

from cnnjax.ops.adaptive import (
    adaptive_avg_pool,
    adaptive_max_pool,
    global_avg_pool,
    global_max_pool,
)
from cnnjax.ops.arithmetic import (
    LayerSpec,
    ReceptiveField,
    conv_output_size,
    conv_transpose_output_size,
    receptive_field,
    same_padding,
)
from cnnjax.ops.conv import conv, conv_transpose
from cnnjax.ops.normalization import batch_norm_train
from cnnjax.ops.pooling import (
    avg_pool,
    lp_pool,
    max_pool,
    weighted_avg_pool,
)

__all__ = [
    "LayerSpec",
    "ReceptiveField",
    "adaptive_avg_pool",
    "adaptive_max_pool",
    "avg_pool",
    "batch_norm_train",
    "conv",
    "conv_output_size",
    "conv_transpose",
    "conv_transpose_output_size",
    "global_avg_pool",
    "global_max_pool",
    "lp_pool",
    "max_pool",
    "receptive_field",
    "same_padding",
    "weighted_avg_pool",
]
