"""A jax2onnx lowering that onnxruntime can run: channels-last max pooling as ONNX MaxPool.

jax2onnx 0.17.1 lowers `lax.reduce_window_max` by treating EVERY axis as spatial: an NHWC
3x3/2 pool becomes a MaxPool with a 4-dimensional kernel (1, 3, 3, 1) on a 6-D tensor, which
onnxruntime's CPU kernel rejects ("Unsupported pooling size"): AlexNet and every ResNet with
the ImageNet stem failed. cnnjax pools channels last with a window of 1 over the batch and the
channels, so this lowering transposes to channels-first, applies a MaxPool over the spatial
axes only (the padding of `reduce_window` pads with -inf, as ONNX MaxPool's pads do) and
transposes back; any other window goes to jax2onnx's own lowering.

`install()` replaces jax2onnx's entry for the primitive in its plugin registry (jax2onnx's own
extension point) after jax2onnx has imported all its plugins.
"""

from __future__ import annotations

from typing import Any

import onnx_ir as ir
from jax2onnx.plugins._ir_shapes import _ensure_value_metadata, _stamp_type_and_shape
from jax2onnx.plugins.jax.lax.reduce_window_max import ReduceWindowMaxPrimitivePlugin
from jax2onnx.plugins.plugin_system import PLUGIN_REGISTRY, import_all_plugins

__all__ = ["install"]


def _channels_last_pool(params: dict[str, Any], rank: int) -> bool:
    """A pool over axes 1..rank-2 only: window, stride 1 and no padding on batch and channels."""
    window = tuple(params["window_dimensions"])
    strides = tuple(params.get("window_strides") or (1,) * rank)
    padding = tuple(tuple(p) for p in params.get("padding") or ((0, 0),) * rank)
    base = tuple(params.get("base_dilation") or (1,) * rank)
    dilation = tuple(params.get("window_dilation") or (1,) * rank)
    return (3 <= rank <= 5 and len(window) == rank and all(b == 1 for b in base)
            and all(v[i] == 1 for v in (window, strides, dilation) for i in (0, rank - 1))
            and padding[0] == (0, 0) and padding[-1] == (0, 0))


class ChannelsLastMaxPool(ReduceWindowMaxPrimitivePlugin):
    """`reduce_window_max` of a channels-last pool -> Transpose, MaxPool, Transpose."""

    def lower(self, ctx: Any, eqn: Any) -> None:
        params = dict(eqn.params)
        operand, out = eqn.invars[0], eqn.outvars[0]
        in_shape, out_shape = tuple(operand.aval.shape), tuple(out.aval.shape)
        rank = len(in_shape)
        if not _channels_last_pool(params, rank):
            super().lower(ctx, eqn)
            return
        spatial = range(1, rank - 1)
        to_first = [0, rank - 1, *spatial]
        to_last = [0, *range(2, rank), 1]
        x = ctx.get_value_for_var(operand, name_hint=ctx.fresh_name("maxpool_in"))
        dtype = x.type.dtype
        kwargs: dict[str, Any] = {
            "kernel_shape": [int(params["window_dimensions"][i]) for i in spatial],
            "strides": [int(params["window_strides"][i]) for i in spatial],
            "pads": [int(params["padding"][i][0]) for i in spatial]
            + [int(params["padding"][i][1]) for i in spatial],
        }
        dilations = [int(params["window_dilation"][i]) for i in spatial]
        if any(d != 1 for d in dilations):
            kwargs["dilations"] = dilations
        first = ctx.builder.Transpose(x, perm=to_first, _outputs=[ctx.fresh_name("nchw")])
        self._stamp(ctx, first, dtype, [in_shape[i] for i in to_first])
        pooled = ctx.builder.MaxPool(first, _outputs=[ctx.fresh_name("maxpool")], **kwargs)
        self._stamp(ctx, pooled, dtype, [out_shape[i] for i in to_first])
        out_spec = ctx.get_value_for_var(out, name_hint=ctx.fresh_name("maxpool_out"))
        name = getattr(out_spec, "name", None) or ctx.fresh_name("maxpool_out")
        result = ctx.builder.Transpose(pooled, perm=to_last, _outputs=[name])
        self._stamp(ctx, result, dtype, out_shape)
        ctx.bind_value_for_var(out, result)

    @staticmethod
    def _stamp(ctx: Any, value: ir.Value, dtype: Any, shape: Any) -> None:
        value.type = ir.TensorType(dtype)
        _stamp_type_and_shape(value, tuple(shape))
        _ensure_value_metadata(ctx, value)


def install() -> None:
    """Use `ChannelsLastMaxPool` for `reduce_window_max` (idempotent)."""
    import_all_plugins()
    current = PLUGIN_REGISTRY.get("reduce_window_max")
    if isinstance(current, ChannelsLastMaxPool):
        return
    plugin = ChannelsLastMaxPool()
    plugin.primitive = "reduce_window_max"
    plugin.metadata = getattr(current, "metadata", {})
    PLUGIN_REGISTRY["reduce_window_max"] = plugin
