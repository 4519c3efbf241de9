"""Every conv lowering computes the same function as the general `lax.conv_general_dilated`
path: outputs and gradients (w.r.t. input and kernel) within float32 rounding, over a sweep
of ranks, shapes, strides, dilations, groups and paddings; plus a naive NumPy loop check and
the dispatch rules of `choose_conv_lowering`."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import ops
from cnnjax.ops import lowering
from cnnjax.ops.conv_lowering import conv_slices_gemm
from cnnjax.ops.lowering import conv_xla
from cnnjax.ops.spec import ConvSpec

ALTERNATIVES = {"slices_gemm": conv_slices_gemm}

# (input shape, kernel size, out_ch, stride, padding pairs, dilation, groups)
CASES = [
    ((2, 9, 3), (3,), 4, (1,), ((1, 1),), (1,), 1),
    ((2, 11, 4), (3,), 4, (3,), ((2, 0),), (2,), 4),  # depthwise, causal-like padding
    ((1, 10, 6), (4,), 6, (2,), ((0, 3),), (1,), 3),
    ((2, 7, 7, 1), (3, 3), 5, (1, 1), ((0, 0), (0, 0)), (1, 1), 1),  # first layer, valid
    ((2, 8, 9, 4), (3, 3), 6, (2, 1), ((1, 2), (0, 1)), (1, 2), 2),
    ((1, 8, 8, 6), (1, 1), 4, (2, 2), ((0, 0), (0, 0)), (1, 1), 1),  # strided 1x1 projection
    ((2, 5, 6, 4), (1, 1), 4, (1, 1), ((1, 0), (0, 1)), (1, 1), 2),  # padded grouped 1x1
    ((1, 9, 9, 3), (2, 3), 3, (3, 2), ((2, 2), (1, 1)), (2, 1), 3),
    ((2, 4, 4, 8), (3, 3), 8, (1, 1), ((1, 1), (1, 1)), (1, 1), 1),  # small map, deep
    ((1, 6, 5, 4, 2), (2, 3, 1), 4, (1, 2, 1), ((1, 0), (1, 1), (0, 0)), (2, 1, 1), 2),
    ((1, 5, 5, 5, 3), (3, 3, 3), 2, (2, 2, 2), ((1, 1), (1, 1), (1, 1)), (1, 1, 1), 1),
]


def _arrays(case, seed=0):
    shape, ks, out_ch, *_, groups = case
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    w = jnp.asarray(rng.standard_normal((*ks, shape[-1] // groups, out_ch)), jnp.float32)
    return x, w


def _value_and_grads(fn, x, w, spec):
    def loss(x, w):
        y = fn(x, w, spec)
        # a fixed, non-uniform cotangent so every output element's gradient path is tested
        cot = jnp.cos(jnp.arange(y.size, dtype=jnp.float32)).reshape(y.shape)
        return jnp.sum(y * cot), y

    (_, y), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(x, w)
    return y, grads


@pytest.mark.parametrize("name", sorted(ALTERNATIVES))
@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}k{c[1]}s{c[3]}g{c[6]}" for c in CASES])
def test_lowering_matches_lax_path(case, name):
    x, w = _arrays(case)
    spec = ConvSpec(case[3], case[4], case[5], case[6])
    y_ref, (gx_ref, gw_ref) = jax.jit(lambda x, w: _value_and_grads(conv_xla, x, w, spec))(x, w)
    fn = ALTERNATIVES[name]
    y, (gx, gw) = jax.jit(lambda x, w: _value_and_grads(fn, x, w, spec))(x, w)
    assert y.shape == y_ref.shape
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gx, gx_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gw, gw_ref, rtol=1e-5, atol=1e-5)


def _naive_conv2d(x, w, stride, pads, dilation, groups):
    """Direct loop definition of a grouped, strided, dilated, zero-padded 2D cross-correlation."""
    x = np.pad(np.asarray(x, np.float64), ((0, 0), *pads, (0, 0)))
    kh, kw, sub_in, out_ch = w.shape
    n, h, wd, _ = x.shape
    oh = (h - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    sub_out = out_ch // groups
    y = np.zeros((n, oh, ow, out_ch))
    for b, i, j, o in itertools.product(range(n), range(oh), range(ow), range(out_ch)):
        g = o // sub_out
        for di, dj, c in itertools.product(range(kh), range(kw), range(sub_in)):
            xi, xj = i * stride[0] + di * dilation[0], j * stride[1] + dj * dilation[1]
            y[b, i, j, o] += x[b, xi, xj, g * sub_in + c] * w[di, dj, c, o]
    return y


@pytest.mark.parametrize("name", sorted(ALTERNATIVES))
def test_lowering_matches_naive_loops(name):
    case = CASES[4]
    x, w = _arrays(case, seed=1)
    spec = ConvSpec(case[3], case[4], case[5], case[6])
    expected = _naive_conv2d(x, np.asarray(w, np.float64), *case[3:5], case[5], case[6])
    np.testing.assert_allclose(ALTERNATIVES[name](x, w, spec), expected, rtol=1e-5, atol=1e-5)


def test_bfloat16_inputs_keep_their_dtype():
    x, w = _arrays(CASES[4])
    spec = ConvSpec(CASES[4][3], CASES[4][4], CASES[4][5], CASES[4][6])
    ref = conv_xla(x, w, spec)
    for fn in ALTERNATIVES.values():
        y = fn(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), spec)
        assert y.dtype == jnp.bfloat16
        np.testing.assert_allclose(y.astype(jnp.float32), ref, rtol=5e-2, atol=1e-1)


def _spec(ks, stride=1):
    nd = len(ks)
    return ConvSpec((stride,) * nd, ((0, 0),) * nd, (1,) * nd, 1)


def test_dispatch_keeps_native_conv_off_cpu(monkeypatch):
    monkeypatch.setattr(lowering.jax, "default_backend", lambda: "gpu")
    for shape, ks in [((8, 32, 32, 64), (1, 1)), ((128, 28, 28, 1), (3, 3))]:
        name = lowering.choose_conv_lowering(shape, (*ks, shape[-1], 16), _spec(ks), jnp.float32)
        assert name == "xla"


def test_dispatch_uses_gemm_for_pointwise_convs_on_cpu(monkeypatch):
    monkeypatch.setattr(lowering.jax, "default_backend", lambda: "cpu")
    monkeypatch.setenv("CNNJAX_ONEDNN", "0")  # the rules without the oneDNN kernel
    name = lowering.choose_conv_lowering((8, 32, 32, 64), (1, 1, 64, 128), _spec((1, 1), 2), "f")
    assert name == "slices_gemm"
    # a mid-sized 3x3 conv stays on XLA's conv, which measured fastest there
    name = lowering.choose_conv_lowering((8, 32, 32, 64), (3, 3, 64, 64), _spec((3, 3)), "f")
    assert name == "xla"


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}k{c[1]}s{c[3]}g{c[6]}" for c in CASES])
def test_every_choice_of_ops_conv_equals_lax_path(case):
    """Whatever `choose_conv_lowering` picks, `ops.conv` (and its gradient) is the lax conv."""
    x, w = _arrays(case, seed=2)
    spec = ConvSpec(case[3], case[4], case[5], case[6])

    def via_ops(x, w, spec):
        return ops.conv(x, w, stride=spec.stride, padding=spec.padding,
                        dilation=spec.dilation, groups=spec.groups)  # fmt: skip

    y, grads = jax.jit(lambda x, w: _value_and_grads(via_ops, x, w, spec))(x, w)
    y_ref, grads_ref = jax.jit(lambda x, w: _value_and_grads(conv_xla, x, w, spec))(x, w)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        np.testing.assert_allclose(g, g_ref, rtol=1e-5, atol=1e-5)
