"""oneDNN convolutions as JAX functions: three FFI calls tied together by `jax.custom_vjp`.

``forward(x, w)`` is the convolution, ``backward_data(dy, w)`` its input gradient (= the
transposed convolution) and ``backward_weights(x, dy)`` its kernel gradient. Each one's VJP is
written with the other two (all three are bilinear), so `grad` of any order, `jit`, `vmap`
(one call per vmapped element) and `shard_map` compose. Shapes are cnnjax's: x
``(batch, *spatial, in_ch)``, w ``(*kernel, in_ch // groups, out_ch)``, float32 only; the
geometry (spatial sizes, stride, padding, dilation, groups) is a static `Geometry`.

The caller (`cnnjax.ops.onednn.conv`) must have checked `native.available()`.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import numpy as np


class Geometry(NamedTuple):
    """A convolution's static geometry: ``in_spatial`` is the conv's input (the transposed
    conv's output) spatial size; padding is ``(low, high)`` per dim; dilation 1 = dense."""

    in_spatial: tuple[int, ...]
    kernel_spatial: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]
    groups: int

    def out_spatial(self) -> tuple[int, ...]:
        """``floor((n + lo + hi - d*(k - 1) - 1) / s) + 1`` per dim."""
        return tuple(
            (n + lo + hi - d * (k - 1) - 1) // s + 1
            for n, k, s, d, (lo, hi) in zip(
                self.in_spatial,
                self.kernel_spatial,
                self.stride,
                self.dilation,
                self.padding,
                strict=True,
            )
        )


def _call(target: str, a: jax.Array, b: jax.Array, out_shape: tuple[int, ...], geom: Geometry):
    call = jax.ffi.ffi_call(
        target, jax.ShapeDtypeStruct(out_shape, a.dtype), vmap_method="sequential"
    )
    return call(
        a,
        b,
        strides=np.asarray(geom.stride, np.int64),
        dilation=np.asarray(geom.dilation, np.int64),
        pad_lo=np.asarray([lo for lo, _ in geom.padding], np.int64),
        pad_hi=np.asarray([hi for _, hi in geom.padding], np.int64),
        groups=np.int64(geom.groups),
    )


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def forward(x: jax.Array, w: jax.Array, geom: Geometry) -> jax.Array:
    """``conv(x, w)``: x ``(n, *in_spatial, in_ch)`` -> ``(n, *out_spatial, out_ch)``."""
    shape = (x.shape[0], *geom.out_spatial(), w.shape[-1])
    return _call("cnnjax_onednn_conv_fwd", x, w, shape, geom)


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def backward_data(dy: jax.Array, w: jax.Array, geom: Geometry) -> jax.Array:
    """Input gradient of `forward` (the transposed conv): dy -> ``(n, *in_spatial, in_ch)``."""
    shape = (dy.shape[0], *geom.in_spatial, w.shape[-2] * geom.groups)
    return _call("cnnjax_onednn_conv_bwd_data", dy, w, shape, geom)


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def backward_weights(x: jax.Array, dy: jax.Array, geom: Geometry) -> jax.Array:
    """Kernel gradient of `forward`: -> ``(*kernel_spatial, in_ch // groups, out_ch)``."""
    shape = (*geom.kernel_spatial, x.shape[-1] // geom.groups, dy.shape[-1])
    return _call("cnnjax_onednn_conv_bwd_weights", x, dy, shape, geom)


def _forward_fwd(x, w, geom):
    return forward(x, w, geom), (x, w)


def _forward_bwd(geom, res, g):
    x, w = res
    return backward_data(g, w, geom), backward_weights(x, g, geom)


def _backward_data_fwd(dy, w, geom):
    return backward_data(dy, w, geom), (dy, w)


def _backward_data_bwd(geom, res, g):
    dy, w = res
    return forward(g, w, geom), backward_weights(g, dy, geom)


def _backward_weights_fwd(x, dy, geom):
    return backward_weights(x, dy, geom), (x, dy)


def _backward_weights_bwd(geom, res, g):
    x, dy = res
    return backward_data(dy, g, geom), forward(x, g, geom)


forward.defvjp(_forward_fwd, _forward_bwd)
backward_data.defvjp(_backward_data_fwd, _backward_data_bwd)
backward_weights.defvjp(_backward_weights_fwd, _backward_weights_bwd)
