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

import functools
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_batching import custom_vmap
from jax.experimental.custom_partitioning import custom_partitioning
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P


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


_FWD, _BWD_DATA, _BWD_WEIGHTS = (
    "cnnjax_onednn_conv_fwd",
    "cnnjax_onednn_conv_bwd_data",
    "cnnjax_onednn_conv_bwd_weights",
)


def _ffi(target: str, out_shape: tuple[int, ...], geom: Geometry):
    """The bare FFI call ``(a, b) -> out`` (one device, one problem)."""
    call = jax.ffi.ffi_call(target, jax.ShapeDtypeStruct(out_shape, np.float32))
    attrs = dict(
        strides=np.asarray(geom.stride, np.int64),
        dilation=np.asarray(geom.dilation, np.int64),
        pad_lo=np.asarray([lo for lo, _ in geom.padding], np.int64),
        pad_hi=np.asarray([hi for _, hi in geom.padding], np.int64),
        groups=np.int64(geom.groups),
    )
    return lambda a, b: call(a, b, **attrs)


def _sharding_rule(target: str, nd: int) -> tuple[str, dict[str, tuple[str, ...]]]:
    """Shardy rule: only the batch dimension may stay sharded (for the kernel gradient it is
    summed over, so each device's partial kernel gradient is all-reduced)."""
    h, o, k = ([f"{c}{i}" for i in range(nd)] for c in "hok")
    x, y, w = (" ".join(["b", *h, "ci"]), " ".join(["b", *o, "co"]), " ".join([*k, "si", "co"]))
    a, b, out = {_FWD: (x, w, y), _BWD_DATA: (y, w, x), _BWD_WEIGHTS: (x, y, w)}[target]
    rule = f"{a}, {b} -> {out}"
    factors = list(dict.fromkeys(rule.replace(",", " ").replace("->", " ").split()))
    others = tuple(f for f in factors if f != "b")  # in order of appearance, as Shardy wants
    if target == _BWD_WEIGHTS:
        return rule, {"reduction_factors": ("b",), "need_replication_factors": others}
    return rule, {"need_replication_factors": others}


@functools.cache
def _partitioned(target: str, out_shape: tuple[int, ...], geom: Geometry):
    """The FFI call under `custom_partitioning`: a batch-sharded jit runs one local call per
    device (psum of the kernel gradient) instead of gathering the batch on every device."""
    nd = len(geom.in_spatial)

    @custom_partitioning
    def call(a, b):
        return _ffi(target, out_shape, geom)(a, b)

    def partition(mesh, arg_shapes, result_shape):
        batch_axes = arg_shapes[0].sharding.spec[0] if arg_shapes[0].sharding.spec else None
        n_shards = 1
        for name in (batch_axes,) if isinstance(batch_axes, str) else batch_axes or ():
            n_shards *= mesh.shape[name]
        if arg_shapes[0].shape[0] % n_shards:  # uneven batch: one whole call per device
            batch_axes, n_shards = None, 1
        act = NamedSharding(mesh, P(batch_axes))
        rep = NamedSharding(mesh, P())
        if target == _BWD_WEIGHTS:
            local = _ffi(target, out_shape, geom)

            def lower(a, b):
                out = local(a, b)
                return jax.lax.psum(out, batch_axes) if batch_axes else out

            return mesh, lower, rep, (act, act)
        local_shape = (out_shape[0] // n_shards, *out_shape[1:])
        return mesh, _ffi(target, local_shape, geom), act, (act, rep)

    rule, factors = _sharding_rule(target, nd)
    call.def_partition(partition=partition, sharding_rule=rule, **factors)
    return call


@functools.cache
def _vmappable(target: str, out_shape: tuple[int, ...], geom: Geometry):
    """`_partitioned` with a vmap rule: a vmapped activation with a shared kernel is folded
    into the batch (one call); anything else runs one call per vmapped element."""

    @custom_vmap
    def call(a, b):
        return _partitioned(target, out_shape, geom)(a, b)

    @call.def_vmap
    def rule(axis_size, in_batched, a, b):
        a_batched, b_batched = in_batched
        if target != _BWD_WEIGHTS and a_batched and not b_batched:
            folded = a.reshape(axis_size * a.shape[1], *a.shape[2:])
            out = _vmappable(target, (folded.shape[0], *out_shape[1:]), geom)(folded, b)
            return out.reshape(axis_size, *out_shape), True
        a = a if a_batched else jnp.broadcast_to(a, (axis_size, *a.shape))
        b = b if b_batched else jnp.broadcast_to(b, (axis_size, *b.shape))
        return jax.lax.map(lambda ab: call(*ab), (a, b)), True

    return call


def _call(target: str, a: jax.Array, b: jax.Array, out_shape: tuple[int, ...], geom: Geometry):
    out = _vmappable(target, tuple(out_shape), geom)(a, b)
    # inside shard_map the result varies over the manual axes its operands vary over (the
    # custom call does not carry that type by itself)
    missing = tuple(sorted((_varying(a) | _varying(b)) - _varying(out)))
    return jax.lax.pcast(out, missing, to="varying") if missing else out


def _varying(x: jax.Array) -> frozenset:
    """The shard_map axes `x` varies over (empty outside shard_map)."""
    return jax.typeof(x).manual_axis_type.varying


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def forward(x: jax.Array, w: jax.Array, geom: Geometry) -> jax.Array:
    """``conv(x, w)``: x ``(n, *in_spatial, in_ch)`` -> ``(n, *out_spatial, out_ch)``."""
    shape = (x.shape[0], *geom.out_spatial(), w.shape[-1])
    return _call(_FWD, x, w, shape, geom)


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def backward_data(dy: jax.Array, w: jax.Array, geom: Geometry) -> jax.Array:
    """Input gradient of `forward` (the transposed conv): dy -> ``(n, *in_spatial, in_ch)``."""
    shape = (dy.shape[0], *geom.in_spatial, w.shape[-2] * geom.groups)
    return _call(_BWD_DATA, dy, w, shape, geom)


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def backward_weights(x: jax.Array, dy: jax.Array, geom: Geometry) -> jax.Array:
    """Kernel gradient of `forward`: -> ``(*kernel_spatial, in_ch // groups, out_ch)``."""
    shape = (*geom.kernel_spatial, x.shape[-1] // geom.groups, dy.shape[-1])
    return _call(_BWD_WEIGHTS, x, dy, shape, geom)


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
