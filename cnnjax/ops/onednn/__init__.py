"""oneDNN convolutions for XLA's CPU backend, through JAX's typed FFI (isolated package).

`conv` and `conv_transpose` take the same ``(x, kernel, spec)`` as the lowerings in
`cnnjax.ops.lowering` (``spec`` has ``stride``, ``padding`` as ``(low, high)`` pairs,
``dilation``, ``groups`` and, for the transposed conv, ``output_padding``); the lowering
chooser runs them where `wants_conv` / `wants_conv_transpose` say so. The native source is
`conv.cc`, built on first use by `native`. Results equal XLA's convolution within float32
rounding (another summation order) and are bitwise the same run to run.

Switch: ``CNNJAX_ONEDNN=0`` in the environment, or `set_enabled(False)`.
"""

from __future__ import annotations

from typing import Any

import jax

from cnnjax.ops.onednn import kernels
from cnnjax.ops.onednn.native import available, unavailable_reason
from cnnjax.ops.onednn.policy import (
    disabled,
    enabled,
    set_enabled,
    wants_conv,
    wants_conv_transpose,
)


def _require_kernel() -> None:
    if not available():
        raise RuntimeError(f"the oneDNN kernel is unavailable: {unavailable_reason()}")


def conv(x: jax.Array, kernel: jax.Array, spec: Any) -> jax.Array:
    """Convolution ``x (n, *s, in) , kernel (*k, in // g, out) -> (n, *s', out)`` on oneDNN."""
    _require_kernel()
    nd = kernel.ndim - 2
    geom = kernels.Geometry(
        tuple(x.shape[1:-1]),
        tuple(kernel.shape[:nd]),
        tuple(spec.stride),
        tuple(tuple(p) for p in spec.padding),
        tuple(spec.dilation),
        int(spec.groups),
    )
    return kernels.forward(x, kernel, geom)


def conv_transpose(x: jax.Array, kernel: jax.Array, spec: Any) -> jax.Array:
    """Transposed convolution (the input gradient of `conv`) on oneDNN's backward-data.

    ``kernel`` is the forward conv's ``(*k, out // g, in)``; the output size is
    ``(n - 1)*stride - lo - hi + dilation*(k - 1) + output_padding + 1``.
    """
    _require_kernel()
    nd = kernel.ndim - 2
    ks = tuple(kernel.shape[:nd])
    out_spatial = tuple(
        (n - 1) * s - lo - hi + d * (k - 1) + op + 1
        for n, k, s, d, (lo, hi), op in zip(
            x.shape[1:-1], ks, spec.stride, spec.dilation, spec.padding, spec.output_padding,
            strict=True,
        )
    )  # fmt: skip
    geom = kernels.Geometry(
        out_spatial,
        ks,
        tuple(spec.stride),
        tuple(tuple(p) for p in spec.padding),
        tuple(spec.dilation),
        int(spec.groups),
    )
    return kernels.backward_data(x, kernel, geom)


__all__ = [
    "available",
    "conv",
    "conv_transpose",
    "disabled",
    "enabled",
    "set_enabled",
    "unavailable_reason",
    "wants_conv",
    "wants_conv_transpose",
]
