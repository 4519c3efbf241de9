"""oneDNN convolutions (`cnnjax.ops.onednn`) against float64 references and XLA's convolution:
outputs, input gradients and kernel gradients over a sweep of geometries, transformations
(jit, grad of grad, vmap), bitwise determinism, the chooser and the fallback without the kernel.

Gradients are taken of ``sum(c * y)`` with a random cotangent ``c``; the float64 references are
the loop convolution of `ops_reference` (forward), its transposed convolution (input gradient)
and a per-offset product (kernel gradient), all independent of lax and oneDNN.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ops_reference import ref_conv, ref_conv_transpose

from cnnjax import models, ops, train
from cnnjax.ops import lowering, onednn
from cnnjax.ops.lowering import ConvSpec, ConvTransposeSpec

needs_kernel = pytest.mark.skipif(
    not onednn.available(), reason=f"oneDNN kernel unavailable: {onednn.unavailable_reason()}"
)

# (x shape, kernel size, out_ch, stride, padding pairs, dilation, groups)
SWEEP = [
    ((2, 9, 11, 6), (3, 3), 4, (1, 1), ((1, 1), (1, 1)), (1, 1), 1),
    ((2, 9, 11, 6), (3, 3), 5, (2, 2), ((1, 1), (1, 1)), (1, 1), 1),
    ((1, 8, 7, 4), (1, 1), 8, (1, 1), ((0, 0), (0, 0)), (1, 1), 1),
    ((2, 8, 8, 4), (1, 1), 6, (2, 2), ((0, 0), (0, 0)), (1, 1), 1),
    ((2, 11, 10, 3), (5, 5), 4, (2, 3), ((1, 2), (0, 2)), (1, 1), 1),
    ((2, 10, 9, 4), (3, 2), 4, (1, 2), ((2, 2), (1, 0)), (2, 3), 1),
    ((2, 7, 9, 6), (3, 3), 4, (1, 1), ((1, 1), (1, 1)), (1, 1), 2),
    ((2, 7, 9, 6), (3, 3), 6, (2, 1), ((1, 1), (1, 1)), (1, 1), 6),
    ((1, 6, 6, 8), (2, 2), 8, (2, 2), ((0, 0), (0, 0)), (1, 1), 1),
    ((3, 13, 4), (3,), 5, (2,), ((2, 0),), (1,), 1),
    ((2, 17, 6), (5,), 6, (1,), ((4, 4),), (3,), 3),
    ((2, 5, 6, 7, 3), (3, 3, 3), 4, (1, 1, 1), ((1, 1),) * 3, (1, 1, 1), 1),
    ((1, 4, 9, 8, 4), (1, 3, 3), 4, (1, 2, 2), ((0, 0), (1, 1), (1, 1)), (1, 1, 1), 2),
    # single-input-channel first layers (grey images, one-lead signals, volumes)
    ((3, 12, 11, 1), (3, 3), 8, (1, 1), ((0, 0), (0, 0)), (1, 1), 1),
    ((2, 13, 9, 1), (5, 5), 6, (2, 1), ((2, 2), (1, 2)), (1, 1), 1),
    ((2, 19, 1), (7,), 5, (2,), ((3, 3),), (2,), 1),
    ((1, 5, 6, 7, 1), (3, 3, 3), 4, (1, 1, 1), ((1, 1),) * 3, (1, 1, 1), 1),
]


def _arrays(x_shape, ks, out_ch, groups, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal((*ks, x_shape[-1] // groups, out_ch)).astype(np.float32)
    return x, w / np.sqrt(np.prod(ks) * x_shape[-1] / groups)


def _ref_kernel_grad(x, c, ks, stride, pads, dilation, groups):
    """float64 kernel gradient of ``sum(c * conv(x, w))``: per offset, patches^T @ c."""
    x = np.pad(np.asarray(x, np.float64), ((0, 0), *pads, (0, 0)))
    c = np.asarray(c, np.float64)
    out = c.shape[1:-1]
    sub_in, sub_out = x.shape[-1] // groups, c.shape[-1] // groups
    dw = np.zeros((*ks, sub_in, c.shape[-1]))
    for off in itertools.product(*(range(k) for k in ks)):
        idx = tuple(
            slice(o * d, o * d + (n - 1) * s + 1, s)
            for o, d, n, s in zip(off, dilation, out, stride, strict=True)
        )
        patch = x[(slice(None), *idx)]
        for g in range(groups):
            xs = patch[..., g * sub_in : (g + 1) * sub_in].reshape(-1, sub_in)
            cs = c[..., g * sub_out : (g + 1) * sub_out].reshape(-1, sub_out)
            dw[(*off, slice(None), slice(g * sub_out, (g + 1) * sub_out))] = xs.T @ cs
    return dw


def _close(actual, ref, what):
    scale = max(1.0, float(np.max(np.abs(ref))))
    np.testing.assert_allclose(np.asarray(actual, np.float64), ref, rtol=0, atol=2e-5 * scale,
                               err_msg=what)  # fmt: skip


def _value_and_grads(fn, x, w, c):
    y, vjp = jax.vjp(fn, jnp.asarray(x), jnp.asarray(w))
    dx, dw = vjp(jnp.asarray(c))
    return y, dx, dw


@needs_kernel
@pytest.mark.parametrize("case", SWEEP, ids=lambda c: f"{c[0]}k{c[1]}s{c[3]}d{c[5]}g{c[6]}")
def test_conv_and_gradients_match_float64_and_xla(case):
    x_shape, ks, out_ch, stride, pads, dilation, groups = case
    x, w = _arrays(x_shape, ks, out_ch, groups)
    spec = ConvSpec(stride, pads, dilation, groups)
    ref_y = ref_conv(x, w, stride=stride, pads=pads, dilation=dilation, groups=groups)
    c = np.random.default_rng(1).standard_normal(ref_y.shape).astype(np.float32)
    y, dx, dw = _value_and_grads(lambda x, w: onednn.conv(x, w, spec), x, w, c)
    op = tuple(
        n + lo + hi - ((o - 1) * s + d * (k - 1) + 1)
        for n, o, k, s, d, (lo, hi) in zip(
            x_shape[1:-1], ref_y.shape[1:-1], ks, stride, dilation, pads, strict=True
        )
    )  # rows the forward conv never reads (floor of the output size), padding included
    ref_dx = ref_conv_transpose(c, w, stride=stride, pads=pads, output_padding=op,
                                dilation=dilation, groups=groups)  # fmt: skip
    _close(y, ref_y, "output")
    _close(dx, ref_dx, "input gradient")
    _close(dw, _ref_kernel_grad(x, c, ks, stride, pads, dilation, groups), "kernel gradient")
    xy, xdx, xdw = _value_and_grads(lambda x, w: lowering.conv_xla(x, w, spec), x, w, c)
    for a, b, what in ((y, xy, "output"), (dx, xdx, "dx"), (dw, xdw, "dw")):
        _close(a, np.asarray(b, np.float64), f"{what} vs XLA")


TRANSPOSED = [
    ((2, 5, 6, 8), (2, 2), 4, (2, 2), ((0, 0), (0, 0)), (0, 0), 1),
    ((2, 5, 6, 8), (3, 3), 4, (2, 2), ((1, 1), (1, 1)), (1, 1), 1),
    ((1, 4, 5, 6), (4, 4), 6, (2, 2), ((1, 1), (1, 2)), (0, 1), 2),
    ((2, 7, 4), (3,), 5, (3,), ((0, 1),), (2,), 1),
    ((1, 3, 4, 3, 4), (2, 2, 2), 2, (2, 2, 2), ((0, 0),) * 3, (0, 0, 0), 1),
]


@needs_kernel
@pytest.mark.parametrize("case", TRANSPOSED, ids=lambda c: f"{c[0]}k{c[1]}s{c[3]}op{c[5]}g{c[6]}")
def test_conv_transpose_and_gradients_match_float64(case):
    x_shape, ks, out_ch, stride, pads, op, groups = case
    rng = np.random.default_rng(2)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal((*ks, out_ch // groups, x_shape[-1])).astype(np.float32) / 3
    dil = (1,) * len(ks)
    spec = ConvTransposeSpec(stride, pads, op, dil, groups)
    ref = ref_conv_transpose(x, w, stride=stride, pads=pads, output_padding=op, dilation=dil,
                             groups=groups)  # fmt: skip
    c = rng.standard_normal(ref.shape).astype(np.float32)
    y, dx, dw = _value_and_grads(lambda x, w: onednn.conv_transpose(x, w, spec), x, w, c)
    _close(y, ref, "output")
    # the transposed conv's input gradient is the conv of the cotangent
    _close(dx, ref_conv(c, w, stride=stride, pads=pads, dilation=dil, groups=groups), "dx")
    # and its kernel gradient the conv's kernel gradient with the roles of c and x swapped
    _close(dw, _ref_kernel_grad(c, x, ks, stride, pads, dil, groups), "dw")


def _loss(impl, spec):
    return lambda x, w: jnp.sum(jnp.tanh(impl(x, w, spec)) ** 2)


@needs_kernel
@pytest.mark.parametrize("transform", ["jit_grad", "grad_of_grad", "vmap_grad"])
def test_jit_vmap_and_second_order_grad_match_xla(transform):
    x, w = _arrays((2, 7, 8, 4), (3, 3), 6, 2, seed=3)
    spec = ConvSpec((2, 1), ((1, 1), (1, 1)), (1, 1), 2)
    args = (x, w)

    def build(impl):
        grad = jax.grad(_loss(impl, spec), argnums=(0, 1))
        if transform == "jit_grad":
            return jax.jit(grad)
        if transform == "grad_of_grad":
            return jax.grad(lambda x, w: sum(jnp.sum(jnp.sin(g)) for g in grad(x, w)), (0, 1))
        return jax.vmap(grad, in_axes=(0, None))

    if transform == "vmap_grad":
        args = (np.stack([x, -0.5 * x, 2 * x]), w)
    for a, b in zip(build(onednn.conv)(*args), build(lowering.conv_xla)(*args), strict=True):
        _close(a, np.asarray(b, np.float64), transform)


@needs_kernel
def test_bitwise_deterministic_run_to_run():
    x, w = _arrays((4, 16, 16, 16), (3, 3), 32, 1, seed=4)
    spec = ConvSpec((1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    step = jax.jit(jax.value_and_grad(_loss(onednn.conv, spec), argnums=(0, 1)))
    first = jax.device_get(step(x, w))
    for _ in range(3):
        again = jax.device_get(step(x, w))
        for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(again), strict=True):
            np.testing.assert_array_equal(a, b)


@needs_kernel
def test_chooser_picks_onednn_on_cpu_float32_and_the_switch_turns_it_off():
    spec = ConvSpec((1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    assert lowering.choose_conv_lowering((8, 16, 16, 8), (3, 3, 8, 8), spec, jnp.float32) == (
        "onednn"
    )
    assert lowering.choose_conv_lowering((8, 16, 16, 8), (3, 3, 8, 8), spec, jnp.bfloat16) != (
        "onednn"
    )
    pointwise = ConvSpec((2, 2), ((0, 0), (0, 0)), (1, 1), 1)
    assert lowering.choose_conv_lowering((8, 16, 16, 8), (1, 1, 8, 8), pointwise, jnp.float32) == (
        "onednn"
    )
    assert lowering.choose_conv_lowering((8, 28, 28, 1), (3, 3, 1, 8), spec, jnp.float32) == (
        "onednn"
    )  # a single-input-channel first layer too (its kernel gradient is XLA's weak spot)
    tspec = ConvTransposeSpec((2, 2), ((1, 1), (1, 1)), (1, 1), (1, 1), 1)
    assert lowering.choose_conv_transpose_lowering((2, 4, 4, 8), (3, 3, 4, 8), tspec,
                                                   jnp.float32) == "onednn"  # fmt: skip
    x, w = _arrays((2, 6, 6, 4), (3, 3), 4, 1)
    assert "cnnjax_onednn" in jax.jit(ops.conv).lower(x, w).as_text()
    try:
        onednn.set_enabled(False)
        assert lowering.choose_conv_lowering((8, 16, 16, 8), (3, 3, 8, 8), spec, jnp.float32) == (
            "xla"
        )
        # a new function: jit's trace cache would return the program traced with oneDNN on
        assert "cnnjax_onednn" not in jax.jit(lambda x, w: ops.conv(x, w)).lower(x, w).as_text()
    finally:
        onednn.set_enabled(None)
    with pytest.raises(TypeError, match="flag"):
        onednn.set_enabled("no")


_FALLBACK = textwrap.dedent(
    """
    import warnings
    import numpy as np
    from cnnjax import models, ops, train
    from cnnjax.ops import lowering, onednn
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 4)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal((3, 3, 4, 5)).astype(np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = ops.conv(x, w, padding=1)
        y2 = ops.conv(x, w, padding=2)
        t = ops.conv_transpose(y, w, stride=1, padding=1)
    spec = lowering.ConvSpec((1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    assert np.array_equal(np.asarray(y), np.asarray(lowering.conv_xla(x, w, spec)))
    assert not onednn.available() and "compiler" in onednn.unavailable_reason()
    msgs = [str(c.message) for c in caught if "oneDNN" in str(c.message)]
    print(len(msgs), y2.shape, t.shape)
    """
)


def test_without_a_compiler_convs_fall_back_to_xla_with_one_warning(tmp_path):
    env = {**os.environ, "CXX": "no-such-compiler-cnnjax", "CNNJAX_CACHE_DIR": str(tmp_path)}
    env.pop("CNNJAX_ONEDNN", None)
    proc = subprocess.run([sys.executable, "-c", _FALLBACK], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["1", "(2,", "10,", "10,", "5)", "(2,", "8,", "8,", "4)"]


@needs_kernel
@pytest.mark.parametrize("strategy", ["jit", "shard_map", "pmap"])
def test_data_parallel_strategies_on_8_devices_match_xla_on_one(strategy):
    assert jax.device_count() == 8, "tests/conftest.py should give 8 CPU devices"
    model = models.create("resnet_tiny", num_classes=10)
    tx = train.make_optimizer({"name": "momentum", "learning_rate": 0.1, "momentum": 0.9})
    task = train.classification()
    rng = np.random.default_rng(5)
    batch = {
        "image": rng.normal(size=(16, 8, 8, 3)).astype(np.float32),
        "label": rng.integers(0, 10, 16).astype(np.int32),
    }
    mesh1 = train.make_mesh(1)
    state0 = jax.device_get(train.create_train_state(model, tx, 0, (1, 8, 8, 3), mesh=mesh1))
    try:
        onednn.set_enabled(False)
        ref_step = train.make_train_step(model, task, tx, strategy="jit", mesh=mesh1)
        ref, _ = ref_step(train.replicate(state0, mesh1), batch)
        ref = jax.device_get(ref.params)
    finally:
        onednn.set_enabled(None)
    mesh8 = train.make_mesh(8)
    step = train.make_train_step(model, task, tx, strategy=strategy, mesh=mesh8)
    state, _ = step(train.replicate(state0, mesh8), batch)
    for a, b in zip(jax.tree.leaves(jax.device_get(state.params)), jax.tree.leaves(ref),
                    strict=True):  # fmt: skip
        _close(a, np.asarray(b, np.float64), strategy)
