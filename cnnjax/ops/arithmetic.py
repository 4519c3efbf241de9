"""Convolution arithmetic as plain integers: output sizes, padding resolution, receptive fields.

Sizes follow PyTorch/TensorFlow conventions (see DESIGN.md):

* conv or pool: ``floor((n + lo + hi - dilation*(k-1) - 1) / stride) + 1``, with ``ceil``
  when ``ceil_mode`` and the PyTorch rule that the last window must start inside the input
  or the low padding;
* transposed conv: ``(n-1)*stride - lo - hi + dilation*(k-1) + output_padding + 1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from cnnjax.checks import check_int, is_int
from cnnjax.ops.spec import Pairs, effective_kernel_size, transpose_count, window_count

PADDING_STRINGS = ("valid", "same", "causal")


def _pair(padding: Any, name: str = "padding") -> tuple[int, int]:
    if is_int(padding):
        return int(padding), int(padding)
    if (
        isinstance(padding, Sequence)
        and not isinstance(padding, str)
        and len(padding) == 2
        and all(is_int(p) for p in padding)
    ):
        return int(padding[0]), int(padding[1])
    raise TypeError(f"{name} must be an int or a (low, high) pair of ints, got {padding!r}")




def same_padding(n: int, kernel_size: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow/Keras "same" padding of one dim: output ``ceil(n/stride)``, odd extra on high."""
    out = -(-n // stride)
    total = max((out - 1) * stride + effective_kernel_size(kernel_size, dilation) - n, 0)
    return total // 2, total - total // 2


def resolve_padding(
    padding: Any,
    spatial: Sequence[int],
    kernel_size: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    *,
    allowed_strings: Sequence[str] = PADDING_STRINGS,
) -> Pairs:
    """Any accepted padding spelling as one ``(low, high)`` pair of ints per spatial dim.

    Accepted: an int (all sides), one int per spatial dim, one ``(low, high)`` pair per
    spatial dim, or one of ``allowed_strings`` (case-insensitive): ``"valid"`` (none),
    ``"same"`` (TF rule) and ``"causal"`` (1D only: ``dilation*(k-1)`` on the low side).
    """
    ndim = len(spatial)
    if isinstance(padding, str):
        mode = padding.lower()
        if mode not in allowed_strings:
            raise ValueError(
                f"padding must be an int, {ndim} ints, {ndim} (low, high) pairs or one of "
                f"{tuple(allowed_strings)}, got {padding!r}"
            )
        if mode == "valid":
            return ((0, 0),) * ndim
        if mode == "same":
            return tuple(
                same_padding(n, k, s, d)
                for n, k, s, d in zip(spatial, kernel_size, stride, dilation, strict=True)
            )
        if ndim != 1:
            raise ValueError(f"padding='causal' is only defined for 1D inputs, got {ndim}D")
        return ((dilation[0] * (kernel_size[0] - 1), 0),)
    if is_int(padding):
        pairs = ((int(padding), int(padding)),) * ndim
    elif isinstance(padding, Sequence) and len(padding) == ndim:
        if all(is_int(p) for p in padding):
            pairs = tuple((int(p), int(p)) for p in padding)
        else:
            pairs = tuple(_pair(p) for p in padding)
    else:
        raise TypeError(
            f"padding must be an int, {ndim} ints, {ndim} (low, high) pairs or one of "
            f"{tuple(allowed_strings)}, got {padding!r}"
        )
    if any(lo < 0 or hi < 0 for lo, hi in pairs):
        raise ValueError(f"padding must be >= 0 on every side, got {padding!r}")
    return pairs


def conv_output_size(
    n: int,
    kernel_size: int,
    *,
    stride: int = 1,
    padding: int | tuple[int, int] | str = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> int:
    """Output length of a conv or pool along one dim of input length `n`.

    `padding` is an int (both sides), a ``(low, high)`` pair, ``"valid"``, ``"same"`` or
    ``"causal"``. With ``ceil_mode`` a partial last window counts if it starts inside the
    input or the low padding (PyTorch). Raises ValueError when the window does not fit.
    """
    n = check_int(n, "n")
    kernel_size = check_int(kernel_size, "kernel_size")
    stride = check_int(stride, "stride")
    dilation = check_int(dilation, "dilation")
    if isinstance(padding, str):
        ((lo, hi),) = resolve_padding(padding, (n,), (kernel_size,), (stride,), (dilation,))
    else:
        lo, hi = _pair(padding)
        if lo < 0 or hi < 0:
            raise ValueError(f"padding must be >= 0 on every side, got {padding!r}")
    return _output_size(n, kernel_size, stride, (lo, hi), dilation, bool(ceil_mode))


def _output_size(
    n: int, kernel_size: int, stride: int, pad: tuple[int, int], dilation: int, ceil_mode: bool
) -> int:
    lo, hi = pad
    eff = effective_kernel_size(kernel_size, dilation)
    span = n + lo + hi - eff
    if span < 0:
        raise ValueError(
            f"window larger than the padded input: kernel_size {kernel_size} with dilation "
            f"{dilation} spans {eff} positions, but the input has {n} + padding "
            f"({lo}, {hi}) = {n + lo + hi}"
        )
    return window_count(n, kernel_size, stride, pad, dilation, ceil_mode)


def output_sizes(
    spatial: Sequence[int],
    kernel_size: Sequence[int],
    stride: Sequence[int],
    pairs: Pairs,
    dilation: Sequence[int],
    ceil_mode: bool = False,
) -> tuple[int, ...]:
    """`_output_size` for every spatial dim (all arguments already validated)."""
    return tuple(
        _output_size(n, k, s, p, d, ceil_mode)
        for n, k, s, p, d in zip(spatial, kernel_size, stride, pairs, dilation, strict=True)
    )


def conv_transpose_output_size(
    n: int,
    kernel_size: int,
    *,
    stride: int = 1,
    padding: int | tuple[int, int] = 0,
    output_padding: int = 0,
    dilation: int = 1,
) -> int:
    """Output length of a transposed conv (PyTorch's ConvTranspose) along one dim.

    ``(n-1)*stride - low - high + dilation*(kernel_size-1) + output_padding + 1``;
    `padding` is an int (both sides) or a ``(low, high)`` pair.
    """
    n = check_int(n, "n")
    kernel_size = check_int(kernel_size, "kernel_size")
    stride = check_int(stride, "stride")
    dilation = check_int(dilation, "dilation")
    lo, hi = _pair(padding)
    if lo < 0 or hi < 0:
        raise ValueError(f"padding must be >= 0 on every side, got {padding!r}")
    if not is_int(output_padding):
        raise TypeError(f"output_padding must be an int, got {output_padding!r}")
    check_output_padding(output_padding, stride, dilation)
    out = transpose_count(n, kernel_size, stride, (lo, hi), dilation, output_padding)
    if out < 1:
        raise ValueError(
            f"padding ({lo}, {hi}) removes the whole output of the transposed conv: "
            f"output size would be {out} for input size {n}"
        )
    return out


def check_output_padding(output_padding: int, stride: int, dilation: int) -> None:
    """PyTorch's rule: output_padding must be smaller than the stride or the dilation."""
    if output_padding < 0 or (output_padding >= stride and output_padding >= dilation):
        raise ValueError(
            f"output_padding must be >= 0 and smaller than either stride ({stride}) or "
            f"dilation ({dilation}), got {output_padding}"
        )


class LayerSpec(NamedTuple):
    """One conv or pool layer along one spatial dim, for `receptive_field`."""

    kernel_size: int
    stride: int = 1
    dilation: int = 1


class ReceptiveField(NamedTuple):
    """Receptive field after a layer: `size` input pixels seen by one output unit, and
    `jump`, the distance in input pixels between adjacent output units."""

    size: int
    jump: int


def receptive_field(
    layers: Sequence[LayerSpec | tuple[int, ...] | int],
) -> tuple[ReceptiveField, ...]:
    """Receptive field size and jump after each layer of a stack, along one spatial dim.

    Each layer is a `LayerSpec`, a ``(kernel_size, stride[, dilation])`` tuple or a bare
    kernel size (stride 1). Padding does not change either quantity. Recurrence:
    ``size += dilation*(k-1) * jump`` then ``jump *= stride`` (starting at size 1, jump 1).
    Example: ``receptive_field([(3, 1), (3, 1)])[-1] == ReceptiveField(size=5, jump=1)``.
    """
    if isinstance(layers, str | bytes) or not isinstance(layers, Sequence):
        raise TypeError(
            f"layers must be a sequence of LayerSpec or (kernel_size, stride[, dilation]) "
            f"tuples, got {type(layers).__name__} {layers!r}"
        )
    size, jump, out = 1, 1, []
    for i, layer in enumerate(layers):
        spec = _layer_spec(layer, i)
        size += (spec.dilation * (spec.kernel_size - 1)) * jump
        jump *= spec.stride
        out.append(ReceptiveField(size, jump))
    return tuple(out)


def _layer_spec(layer: Any, index: int) -> LayerSpec:
    if is_int(layer):
        layer = (layer,)
    if not isinstance(layer, Sequence) or not 1 <= len(layer) <= 3:
        raise TypeError(
            f"layers[{index}] must be a LayerSpec, a (kernel_size, stride[, dilation]) tuple "
            f"or an int kernel size, got {layer!r}"
        )
    spec = LayerSpec(*layer)
    for field, value in zip(LayerSpec._fields, spec, strict=True):
        check_int(value, f"layers[{index}].{field}")
    return spec
