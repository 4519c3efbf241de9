"""Per-shape conv lowering benchmark: forward + backward (gradient w.r.t. kernel, and input
unless it is the network's first layer) of every conv shape of the three benchmark models,
for each lowering in `cnnjax.ops.lowering.CONV_LOWERINGS` and the im2col rewrite below (never
chosen, kept for comparison), side by side in one process.

    python -m benchmarks._conv_shapes [--models simple_cnn,resnet18,unet] [--reps 5]

The numbers feed `choose_conv_lowering`; run it again after changing XLA or its flags.
"""

from __future__ import annotations

import argparse
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cnnjax.ops.conv_lowering import grouped_gemm
from cnnjax.ops.lowering import CONV_LOWERINGS, ConvSpec, choose_conv_lowering
from cnnjax.ops.spec import DIMENSION_NUMBERS


def conv_patches_gemm(x: jax.Array, kernel: jax.Array, spec: ConvSpec) -> jax.Array:
    """Convolution as `lax.conv_general_dilated_patches` (im2col) times one GEMM.

    The patches' features are ordered (in_ch, *kernel offsets); the kernel is permuted to
    match. Same arguments and result as `cnnjax.ops.conv_lowering.conv_slices_gemm`.
    """
    nd = kernel.ndim - 2
    *ks, sub_in, out_ch = kernel.shape
    g = spec.groups
    cols = lax.conv_general_dilated_patches(
        x,
        filter_shape=tuple(ks),
        window_strides=spec.stride,
        padding=spec.padding,
        rhs_dilation=spec.dilation,
        dimension_numbers=DIMENSION_NUMBERS[nd],
        precision=lax.Precision.HIGHEST,
    )
    # kernel (*k, sub_in, out) -> (sub_in, *k, out) -> (sub_in * K, g, out // g)
    k2 = jnp.moveaxis(kernel, -2, 0).reshape(sub_in * math.prod(ks), g, out_ch // g)
    return grouped_gemm(cols, k2, g, x.dtype)


LOWERINGS = {**CONV_LOWERINGS, "patches_gemm": conv_patches_gemm}

# (input shape, kernel size, in, out, stride, padding, first layer)
SHAPES = {
    "simple_cnn": [
        ((128, 28, 28, 1), 3, 32, 1, 0, True),
        ((128, 13, 13, 32), 3, 64, 1, 0, False),
        ((128, 5, 5, 64), 3, 64, 1, 0, False),
    ],
    "resnet18": [
        ((64, 32, 32, 3), 3, 64, 1, 1, True),
        ((64, 32, 32, 64), 3, 64, 1, 1, False),
        ((64, 32, 32, 64), 3, 128, 2, 1, False),
        ((64, 32, 32, 64), 1, 128, 2, 0, False),
        ((64, 16, 16, 128), 3, 128, 1, 1, False),
        ((64, 16, 16, 128), 3, 256, 2, 1, False),
        ((64, 8, 8, 256), 3, 256, 1, 1, False),
        ((64, 8, 8, 256), 3, 512, 2, 1, False),
        ((64, 4, 4, 512), 3, 512, 1, 1, False),
    ],
    "unet": [
        ((8, 128, 128, 3), 3, 32, 1, 1, True),
        ((8, 128, 128, 32), 3, 32, 1, 1, False),
        ((8, 64, 64, 32), 3, 64, 1, 1, False),
        ((8, 64, 64, 64), 3, 64, 1, 1, False),
        ((8, 32, 32, 64), 3, 128, 1, 1, False),
        ((8, 32, 32, 128), 3, 128, 1, 1, False),
        ((8, 16, 16, 128), 3, 256, 1, 1, False),
        ((8, 16, 16, 256), 3, 256, 1, 1, False),
        ((8, 32, 32, 256), 3, 128, 1, 1, False),
        ((8, 64, 64, 128), 3, 64, 1, 1, False),
        ((8, 128, 128, 64), 3, 32, 1, 1, False),
        ((8, 128, 128, 32), 1, 2, 1, 0, False),
    ],
}


def bench(fn, args, reps: int) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default=",".join(SHAPES))
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    names = list(LOWERINGS)
    print(f"{'shape':<38} " + " ".join(f"{n:>8}" for n in names) + "   chosen")
    rng = np.random.default_rng(0)
    for model in args.models.split(","):
        for shape, k, out, s, p, first in SHAPES[model]:
            x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
            w = jnp.asarray(rng.standard_normal((k, k, shape[-1], out)) * 0.1, jnp.float32)
            spec = ConvSpec((s, s), ((p, p), (p, p)), (1, 1), 1)
            res = []
            for name in names:
                f = LOWERINGS[name]

                def loss(x, w, f=f, spec=spec):
                    return jnp.sum(f(x, w, spec) ** 2)

                g = jax.jit(jax.grad(loss, argnums=(1,) if first else (0, 1)))
                res.append(bench(g, (x, w), args.reps))
            chosen = choose_conv_lowering(shape, w.shape, spec, jnp.float32)
            label = f"{model[:6]} {shape} k{k} s{s} ->{out}"
            print(f"{label:<38} " + " ".join(f"{t:8.2f}" for t in res) + f"   {chosen}")


if __name__ == "__main__":
    main()
