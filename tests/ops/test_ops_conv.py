"""conv and conv_transpose against naive NumPy loops, and conv_transpose == vjp of conv."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ops_reference import ref_conv, ref_conv_transpose

from cnnjax import ops
from cnnjax.ops import lowering

ATOL = 1e-4
RTOL = 1e-4


def _conv_cases(count: int, seed: int) -> list[dict]:
    """Random small conv configurations over 1D/2D/3D, strides, dilations, groups,
    padding spellings and padding modes."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        nd = int(rng.integers(1, 4))
        groups = int(rng.choice([1, 2, 3]))
        cin = groups * int(rng.integers(1, 3))
        cout = groups * int(rng.integers(1, 3))
        max_n = {1: 11, 2: 7, 3: 5}[nd]
        ks = tuple(int(rng.integers(1, 4)) for _ in range(nd))
        stride = tuple(int(rng.integers(1, 4)) for _ in range(nd))
        dilation = tuple(int(rng.integers(1, 3)) for _ in range(nd))
        spatial = tuple(int(rng.integers(3, max_n + 1)) for _ in range(nd))
        mode = str(rng.choice(["zeros", "reflect", "replicate", "circular"]))
        kind = rng.choice(["int", "per_dim", "pairs", "valid", "same", "causal"])
        if kind == "causal" and nd != 1:
            kind = "same"
        if kind == "int":
            padding = int(rng.integers(0, 3))
        elif kind == "per_dim":
            padding = tuple(int(rng.integers(0, 3)) for _ in range(nd))
        elif kind == "pairs":
            padding = tuple((int(rng.integers(0, 3)), int(rng.integers(0, 3))) for _ in range(nd))
        else:
            padding = str(kind)
        try:
            pairs = ops.arithmetic.resolve_padding(padding, spatial, ks, stride, dilation)
        except ValueError:
            continue
        if mode == "reflect" and any(max(p) >= n for p, n in zip(pairs, spatial, strict=True)):
            continue
        eff = [d * (k - 1) + 1 for k, d in zip(ks, dilation, strict=True)]
        if any(n + lo + hi < e for n, (lo, hi), e in zip(spatial, pairs, eff, strict=True)):
            continue
        cases.append(
            dict(
                nd=nd,
                groups=groups,
                cin=cin,
                cout=cout,
                ks=ks,
                stride=stride,
                dilation=dilation,
                spatial=spatial,
                mode=mode,
                padding=padding,
                pairs=pairs,
                bias=bool(rng.integers(0, 2)),
                seed=int(rng.integers(1 << 30)),
            )
        )
    return cases


CONV_CASES = _conv_cases(40, seed=0)


def _case_id(c: dict) -> str:
    return (
        f"{c['nd']}d-n{c['spatial']}-k{c['ks']}-s{c['stride']}-d{c['dilation']}"
        f"-g{c['groups']}-p{c['padding']}-{c['mode']}"
    ).replace(" ", "")


def _data(c: dict):
    rng = np.random.default_rng(c["seed"])
    x = rng.normal(size=(2, *c["spatial"], c["cin"])).astype(np.float32)
    w = rng.normal(size=(*c["ks"], c["cin"] // c["groups"], c["cout"])).astype(np.float32)
    b = rng.normal(size=(c["cout"],)).astype(np.float32) if c["bias"] else None
    return x, w, b


@pytest.mark.parametrize("c", CONV_CASES, ids=_case_id)
def test_conv_matches_loops(c):
    x, w, b = _data(c)
    y = ops.conv(
        x,
        w,
        b,
        stride=c["stride"],
        padding=c["padding"],
        dilation=c["dilation"],
        groups=c["groups"],
        padding_mode=c["mode"],
    )
    ref = ref_conv(
        x,
        w,
        b,
        stride=c["stride"],
        pads=c["pairs"],
        dilation=c["dilation"],
        groups=c["groups"],
        padding_mode=c["mode"],
    )
    assert y.shape == ref.shape
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y), ref, rtol=RTOL, atol=ATOL)


def _transpose_cases(count: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        nd = int(rng.integers(1, 4))
        groups = int(rng.choice([1, 2]))
        cin = groups * int(rng.integers(1, 3))
        cout = groups * int(rng.integers(1, 3))
        max_n = {1: 7, 2: 4, 3: 3}[nd]
        ks = tuple(int(rng.integers(1, 4)) for _ in range(nd))
        stride = tuple(int(rng.integers(1, 4)) for _ in range(nd))
        if rng.random() < 0.3:  # exercise the kernel == stride fast path often
            stride = ks
        dilation = tuple(int(rng.integers(1, 3)) for _ in range(nd))
        if stride == ks and rng.random() < 0.7:
            dilation = (1,) * nd
        spatial = tuple(int(rng.integers(1, max_n + 1)) for _ in range(nd))
        pads = tuple((int(rng.integers(0, 3)), int(rng.integers(0, 3))) for _ in range(nd))
        output_padding = tuple(
            int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation, strict=True)
        )
        sizes = [
            (n - 1) * s - lo - hi + d * (k - 1) + op + 1
            for n, k, s, d, (lo, hi), op in zip(
                spatial, ks, stride, dilation, pads, output_padding, strict=True
            )
        ]
        if min(sizes) < 1:
            continue
        cases.append(
            dict(
                nd=nd,
                groups=groups,
                cin=cin,
                cout=cout,
                ks=ks,
                stride=stride,
                dilation=dilation,
                spatial=spatial,
                pads=pads,
                output_padding=output_padding,
                bias=bool(rng.integers(0, 2)),
                seed=int(rng.integers(1 << 30)),
            )
        )
    return cases


TRANSPOSE_CASES = _transpose_cases(30, seed=1)


def _t_id(c: dict) -> str:
    return (
        f"{c['nd']}d-n{c['spatial']}-k{c['ks']}-s{c['stride']}-d{c['dilation']}"
        f"-g{c['groups']}-p{c['pads']}-op{c['output_padding']}"
    ).replace(" ", "")


def _t_data(c: dict):
    rng = np.random.default_rng(c["seed"])
    x = rng.normal(size=(2, *c["spatial"], c["cin"])).astype(np.float32)
    w = rng.normal(size=(*c["ks"], c["cout"] // c["groups"], c["cin"])).astype(np.float32)
    b = rng.normal(size=(c["cout"],)).astype(np.float32) if c["bias"] else None
    return x, w, b


def _t_kwargs(c: dict) -> dict:
    return dict(
        stride=c["stride"],
        padding=c["pads"],
        output_padding=c["output_padding"],
        dilation=c["dilation"],
        groups=c["groups"],
    )


@pytest.mark.parametrize("c", TRANSPOSE_CASES, ids=_t_id)
def test_conv_transpose_matches_scatter_loops(c):
    x, w, b = _t_data(c)
    y = ops.conv_transpose(x, w, b, **_t_kwargs(c))
    ref = ref_conv_transpose(
        x,
        w,
        b,
        stride=c["stride"],
        pads=c["pads"],
        output_padding=c["output_padding"],
        dilation=c["dilation"],
        groups=c["groups"],
    )
    assert y.shape == ref.shape
    np.testing.assert_allclose(np.asarray(y), ref, rtol=RTOL, atol=ATOL)


# The adjoint identity needs output_padding < stride (PyTorch also accepts
# stride <= output_padding < dilation, whose extra rows no conv maps from; the loop
# reference covers those).
@pytest.mark.parametrize(
    "c",
    [
        c
        for c in TRANSPOSE_CASES
        if all(op < s for op, s in zip(c["output_padding"], c["stride"], strict=True))
    ],
    ids=_t_id,
)
def test_conv_transpose_is_vjp_of_conv(c):
    x, w, _ = _t_data(c)
    y = ops.conv_transpose(x, w, **_t_kwargs(c))
    # The forward conv maps an input of y's size back to x's size.
    x_shape = (*y.shape[:-1], c["cout"])
    probe = jnp.zeros(x_shape, jnp.float32)
    out, vjp = jax.vjp(
        lambda z: ops.conv(
            z, w, stride=c["stride"], padding=c["pads"], dilation=c["dilation"], groups=c["groups"]
        ),
        probe,
    )
    assert out.shape == x.shape
    (expected,) = vjp(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(y), np.asarray(expected), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    "c",
    [
        c
        for c in TRANSPOSE_CASES
        if lowering.choose_conv_transpose_lowering(
            (2, *c["spatial"], c["cin"]),
            (*c["ks"], c["cout"] // c["groups"], c["cin"]),
            lowering.ConvTransposeSpec(
                c["stride"], c["pads"], c["output_padding"], c["dilation"], c["groups"]
            ),
            jnp.float32,
        )
        == "kernel_eq_stride"
    ],
    ids=_t_id,
)
def test_conv_transpose_fast_path_equals_general_path(c):
    x, w, _ = _t_data(c)
    spec = lowering.ConvTransposeSpec(
        c["stride"], c["pads"], c["output_padding"], c["dilation"], c["groups"]
    )
    fast = lowering.conv_transpose_kernel_eq_stride(jnp.asarray(x), jnp.asarray(w), spec)
    general = lowering.conv_transpose_xla(jnp.asarray(x), jnp.asarray(w), spec)
    np.testing.assert_allclose(np.asarray(fast), np.asarray(general), rtol=RTOL, atol=ATOL)
    g_fast = jax.jit(
        jax.grad(lambda w: (lowering.conv_transpose_kernel_eq_stride(x, w, spec) ** 2).sum())
    )
    g_gen = jax.jit(jax.grad(lambda w: (lowering.conv_transpose_xla(x, w, spec) ** 2).sum()))
    np.testing.assert_allclose(
        np.asarray(g_fast(jnp.asarray(w))), np.asarray(g_gen(jnp.asarray(w))), rtol=1e-3, atol=1e-3
    )


def test_fast_path_is_chosen_for_unet_upconv(monkeypatch):
    monkeypatch.setenv("CNNJAX_ONEDNN", "0")  # the rules without the oneDNN kernel
    spec = lowering.ConvTransposeSpec((2, 2), ((0, 0), (0, 0)), (0, 0), (1, 1), 1)
    assert (
        lowering.choose_conv_transpose_lowering((8, 64, 64, 32), (2, 2, 16, 32), spec, jnp.float32)
        == "kernel_eq_stride"
    )
    spec = spec._replace(dilation=(2, 1))
    assert (
        lowering.choose_conv_transpose_lowering((8, 64, 64, 32), (2, 2, 16, 32), spec, jnp.float32)
        == "xla"
    )


def test_conv_transpose_unet_upconv_doubles_size():
    x = jnp.ones((1, 4, 4, 8))
    w = jnp.ones((2, 2, 3, 8))
    assert ops.conv_transpose(x, w, stride=2).shape == (1, 8, 8, 3)


def test_jit_grad_vmap():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(3, 2, 6, 5, 4)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 3, 2, 6)), jnp.float32)

    def f(x, w):
        return ops.conv(x, w, stride=2, padding="same", groups=2, padding_mode="reflect")

    jitted = jax.jit(f)(x[0], w)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(f(x[0], w)), rtol=1e-5, atol=1e-5)
    batched = jax.jit(jax.vmap(f, in_axes=(0, None)))(x, w)
    np.testing.assert_allclose(np.asarray(batched[1]), np.asarray(f(x[1], w)), rtol=1e-5, atol=1e-5)
    gx, gw = jax.jit(jax.grad(lambda x, w: (f(x, w) ** 2).sum(), argnums=(0, 1)))(x[0], w)
    assert gx.shape == x[0].shape and gw.shape == w.shape
    eps = 1e-2
    dw = jnp.zeros_like(w).at[1, 2, 0, 3].set(eps)
    loss = jax.jit(lambda w: (f(x[0], w) ** 2).sum())
    numeric = (loss(w + dw) - loss(w - dw)) / (2 * eps)
    np.testing.assert_allclose(float(gw[1, 2, 0, 3]), float(numeric), rtol=1e-2)
    gt = jax.jit(jax.grad(lambda z: ops.conv_transpose(z, w, stride=2).sum()))(
        jnp.ones((2, 3, 3, 6))
    )
    assert gt.shape == (2, 3, 3, 6)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_keeps_dtype_and_is_close(dtype):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 8, 8, 4)).astype(np.float32)
    w = rng.normal(size=(3, 3, 4, 5)).astype(np.float32)
    y = ops.conv(jnp.asarray(x, dtype), jnp.asarray(w, dtype), padding=1)
    assert y.dtype == dtype
    ref = ref_conv(
        np.asarray(jnp.asarray(x, dtype), np.float64),
        np.asarray(jnp.asarray(w, dtype), np.float64),
        stride=(1, 1),
        pads=((1, 1), (1, 1)),
        dilation=(1, 1),
    )
    np.testing.assert_allclose(np.asarray(y, np.float32), ref, rtol=2e-2, atol=5e-2)
    wt = rng.normal(size=(2, 2, 3, 4)).astype(np.float32)
    yt = ops.conv_transpose(jnp.asarray(x, dtype), jnp.asarray(wt, dtype), stride=2)
    assert yt.dtype == dtype
