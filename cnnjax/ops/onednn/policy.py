"""When cnnjax runs a convolution on oneDNN: the switch and the per-shape rule.

Off unless all hold: the switch is on (``CNNJAX_ONEDNN`` is not ``0``/``false``/``off``/``no``,
and `set_enabled` was not called with False), JAX's default backend is the CPU (never on
GPU/TPU), the dtype is float32, the batch is not empty, the shape is one oneDNN was measured
faster on (`conv_is_faster`), and the kernel is built and loaded (`native.available()`, which
builds it on first use). The choice is made when a function is traced: `set_enabled` affects
functions traced after it, not already-compiled ones.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax
import jax.numpy as jnp

from cnnjax.checks import env_switch
from cnnjax.ops.onednn import native

_OVERRIDE: list[bool | None] = [None]


def set_enabled(flag: bool | None) -> None:
    """Turns oneDNN convolutions on (True) or off (False); None goes back to ``CNNJAX_ONEDNN``."""
    if flag is not None and not isinstance(flag, bool):
        raise TypeError(f"flag must be a bool or None, got {type(flag).__name__} {flag!r}")
    _OVERRIDE[0] = flag


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Functions traced inside the block use XLA's convolutions (e.g. for a portable export:
    an artifact must not call this process's oneDNN kernel); the switch is restored after."""
    previous = _OVERRIDE[0]
    _OVERRIDE[0] = False
    try:
        yield
    finally:
        _OVERRIDE[0] = previous


def enabled() -> bool:
    """The switch (`set_enabled`, else the ``CNNJAX_ONEDNN`` environment variable, default on)."""
    if _OVERRIDE[0] is not None:
        return _OVERRIDE[0]
    return env_switch("CNNJAX_ONEDNN")


def conv_is_faster(x_shape: tuple[int, ...], kernel_shape: tuple[int, ...], groups: int) -> bool:
    """Shapes where oneDNN's forward + both gradients measured faster than cnnjax's XLA path
    (2-core AVX-512 CPU, jax 0.10.2; `python -m benchmarks.conv_kernels` per conv, and the
    training steps of `python -m benchmarks.train_step`): every 1D/2D/3D conv measured.
    Pointwise (1x1) convs included: ResNet-18's training step measured ~7% faster with its
    three strided 1x1 projections on oneDNN than on the slices + GEMM lowering.
    Single-input-channel first layers included since 2026-12-05: XLA computes their kernel
    gradient as one long dot after two transposes (~5 ms for `simple_cnn`'s 128x28x28x1
    input, against 0.3 ms on oneDNN once its first calls are past), and whole training steps
    on grey images measured faster (A/B in one process, medians of 8 windows: `mnist`
    29.5 -> 24.9 ms, `mnist_lenet5` 15.6 -> 6.7 ms, `fashion_mnist` 29.5 -> 24.7 ms,
    `signals_cnn1d` 82.8 -> 79.1 ms, `isbi2012_unet` 250 -> 252 ms, within noise)."""
    del x_shape, kernel_shape, groups
    return True


def _eligible(x_shape: tuple[int, ...], dtype: jnp.dtype) -> bool:
    return (
        enabled()
        and jax.default_backend() == "cpu"
        and jnp.dtype(dtype) == jnp.float32
        and len(x_shape) in (3, 4, 5)
        and x_shape[0] > 0
    )


def wants_conv(
    x_shape: tuple[int, ...], kernel_shape: tuple[int, ...], groups: int, dtype: jnp.dtype
) -> bool:
    """True when `cnnjax.ops.onednn.conv` should run this convolution."""
    return (
        _eligible(x_shape, dtype)
        and conv_is_faster(x_shape, kernel_shape, groups)
        and native.available()
    )


def wants_conv_transpose(
    x_shape: tuple[int, ...],
    kernel_shape: tuple[int, ...],
    stride: tuple[int, ...],
    output_padding: tuple[int, ...],
    groups: int,
    dtype: jnp.dtype,
) -> bool:
    """True when `cnnjax.ops.onednn.conv_transpose` should run this transposed convolution
    (as oneDNN's backward-data; output_padding must be smaller than the stride)."""
    return (
        _eligible(x_shape, dtype)
        and all(op < s for op, s in zip(output_padding, stride, strict=True))
        and native.available()
    )
