"""Pooling ops against naive NumPy loops (PyTorch semantics), fast paths, transforms."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ops_reference import (
    ref_adaptive_pool,
    ref_avg_pool,
    ref_lp_pool,
    ref_max_pool,
    ref_weighted_avg_pool,
)

from cnnjax import ops
from cnnjax.ops import adaptive, pooling

ATOL = 1e-5
RTOL = 1e-5


def _pool_cases(count: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        nd = int(rng.integers(1, 4))
        max_n = {1: 12, 2: 8, 3: 5}[nd]
        spatial = tuple(int(rng.integers(2, max_n + 1)) for _ in range(nd))
        window = tuple(int(rng.integers(1, 4)) for _ in range(nd))
        stride = None if rng.random() < 0.3 else tuple(int(rng.integers(1, 4)) for _ in range(nd))
        dilation = tuple(int(rng.integers(1, 3)) for _ in range(nd))
        pads = tuple(
            (int(rng.integers(0, (d * (k - 1) + 1) // 2 + 1)),) * 2
            for k, d in zip(window, dilation, strict=True)
        )
        if rng.random() < 0.3:
            pads = tuple((0, 0) for _ in range(nd))
        ceil_mode = bool(rng.integers(0, 2))
        eff = [d * (k - 1) + 1 for k, d in zip(window, dilation, strict=True)]
        if any(n + 2 * p[0] < e for n, p, e in zip(spatial, pads, eff, strict=True)):
            continue
        cases.append(
            dict(
                spatial=spatial,
                window=window,
                stride=stride,
                dilation=dilation,
                pads=pads,
                ceil_mode=ceil_mode,
                seed=int(rng.integers(1 << 30)),
            )
        )
    return cases


POOL_CASES = _pool_cases(40, seed=2)


def _id(c: dict) -> str:
    return (
        f"n{c['spatial']}-w{c['window']}-s{c['stride']}-d{c['dilation']}-p{c['pads']}"
        f"-ceil{int(c['ceil_mode'])}"
    ).replace(" ", "")


def _x(c: dict, channels: int = 3) -> np.ndarray:
    rng = np.random.default_rng(c["seed"])
    return rng.normal(size=(2, *c["spatial"], channels)).astype(np.float32)


def _stride(c: dict) -> tuple[int, ...]:
    return c["window"] if c["stride"] is None else c["stride"]


def _padding_arg(c: dict):
    return tuple(lo for lo, _ in c["pads"])


@pytest.mark.parametrize("c", POOL_CASES, ids=_id)
def test_max_pool_matches_loops(c):
    x = _x(c)
    y = ops.max_pool(
        x,
        c["window"],
        stride=c["stride"],
        padding=_padding_arg(c),
        dilation=c["dilation"],
        ceil_mode=c["ceil_mode"],
    )
    ref = ref_max_pool(x, c["window"], _stride(c), c["pads"], c["dilation"], c["ceil_mode"])
    assert y.shape == ref.shape
    np.testing.assert_allclose(np.asarray(y), ref, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("c", POOL_CASES[::2], ids=_id)
def test_avg_pool_matches_loops(c, count_include_pad):
    c = dict(c, dilation=(1,) * len(c["window"]))
    c["pads"] = tuple(
        (min(lo, k // 2),) * 2 for (lo, _), k in zip(c["pads"], c["window"], strict=True)
    )
    x = _x(c)
    if any(
        n + 2 * lo < k for n, (lo, _), k in zip(c["spatial"], c["pads"], c["window"], strict=True)
    ):
        pytest.skip("window larger than the padded input")
    y = ops.avg_pool(
        x,
        c["window"],
        stride=c["stride"],
        padding=_padding_arg(c),
        ceil_mode=c["ceil_mode"],
        count_include_pad=count_include_pad,
    )
    ref = ref_avg_pool(x, c["window"], _stride(c), c["pads"], c["ceil_mode"], count_include_pad)
    assert y.shape == ref.shape
    np.testing.assert_allclose(np.asarray(y), ref, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("p", [1, 2, 3.5])
@pytest.mark.parametrize("c", POOL_CASES[1::4], ids=_id)
def test_lp_pool_matches_loops(c, p):
    x = np.abs(_x(c)) + 0.1
    if any(n < k for n, k in zip(c["spatial"], c["window"], strict=True)):
        pytest.skip("window larger than the input")
    y = ops.lp_pool(x, p, c["window"], stride=c["stride"], ceil_mode=c["ceil_mode"])
    ref = ref_lp_pool(x, p, c["window"], _stride(c), c["ceil_mode"])
    assert y.shape == ref.shape
    np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.0])
@pytest.mark.parametrize("c", POOL_CASES[2::4], ids=_id)
def test_weighted_avg_pool_matches_loops(c, sigma):
    pads = tuple((min(lo, k // 2),) * 2 for (lo, _), k in zip(c["pads"], c["window"], strict=True))
    if any(n + 2 * lo < k for n, (lo, _), k in zip(c["spatial"], pads, c["window"], strict=True)):
        pytest.skip("window larger than the padded input")
    x = _x(c)
    y = ops.weighted_avg_pool(
        x, c["window"], stride=c["stride"], padding=tuple(lo for lo, _ in pads), sigma=sigma
    )
    ref = ref_weighted_avg_pool(x, c["window"], _stride(c), pads, sigma)
    assert y.shape == ref.shape
    np.testing.assert_allclose(np.asarray(y), ref, rtol=RTOL, atol=ATOL)


def test_weighted_avg_pool_of_constant_is_constant_and_centre_weighs_most():
    x = jnp.full((1, 6, 6, 2), 3.0)
    np.testing.assert_allclose(np.asarray(ops.weighted_avg_pool(x, 3, stride=1)), 3.0, rtol=1e-6)
    w = pooling.gaussian_window((3, 3), 1.0)
    assert w[1, 1] == w.max() and abs(w.sum() - 1) < 1e-12
    assert w[0, 0] == pytest.approx(w[1, 1] * np.exp(-1.0))


ADAPTIVE_CASES = [
    ((7,), (3,)),
    ((10,), (4,)),
    ((5,), (5,)),
    ((4,), (6,)),
    ((9, 7), (4, 3)),
    ((8, 8), (2, 2)),
    ((5, 6), (3, None)),
    ((7, 5, 6), (3, 2, 4)),
    ((4, 4, 4), (1, 1, 1)),
    ((3, 5), (5, 7)),
]


@pytest.mark.parametrize(("spatial", "out"), ADAPTIVE_CASES)
def test_adaptive_pools_match_loops(spatial, out):
    rng = np.random.default_rng(len(spatial) * 100 + sum(spatial))
    x = rng.normal(size=(2, *spatial, 3)).astype(np.float32)
    full = tuple(n if o is None else o for n, o in zip(spatial, out, strict=True))
    arg = out[0] if len(out) == 1 else out
    np.testing.assert_allclose(
        np.asarray(ops.adaptive_avg_pool(x, arg)),
        ref_adaptive_pool(x, full, np.mean),
        rtol=RTOL,
        atol=ATOL,
    )
    np.testing.assert_allclose(
        np.asarray(ops.adaptive_max_pool(x, arg)),
        ref_adaptive_pool(x, full, np.max),
        rtol=RTOL,
        atol=ATOL,
    )


def test_adaptive_bins_are_pytorch_bins():
    # n=10, out=4: starts floor(i*10/4) = 0,2,5,7; ends ceil((i+1)*10/4) = 3,5,8,10
    assert adaptive.adaptive_bins(10, 4) == [(0, 3), (2, 5), (5, 8), (7, 10)]


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_global_pools(nd):
    rng = np.random.default_rng(nd)
    x = rng.normal(size=(2, *(3,) * nd, 4)).astype(np.float32)
    axes = tuple(range(1, nd + 1))
    np.testing.assert_allclose(
        np.asarray(ops.global_avg_pool(x)), x.mean(axis=axes), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(np.asarray(ops.global_max_pool(x)), x.max(axis=axes))


@pytest.mark.parametrize(
    ("spatial", "window"), [((8, 6), 2), ((9, 7), (3, 2)), ((10,), 5), ((4, 6, 5), 2)]
)
def test_tiling_fast_path_equals_reduce_window(spatial, window):
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.normal(size=(2, *spatial, 3)), jnp.float32)
    pool = pooling._pool_setup(x, window, None, 0)
    assert pooling._is_tiling(pool)
    cfg = pooling._window_config(pool)
    general_max = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, **cfg)
    general_sum = jax.lax.reduce_window(x, 0.0, jax.lax.add, **cfg)
    np.testing.assert_array_equal(np.asarray(ops.max_pool(x, window)), np.asarray(general_max))
    n_window = np.prod(pool.window)
    np.testing.assert_allclose(
        np.asarray(ops.avg_pool(x, window)), np.asarray(general_sum) / n_window, rtol=1e-6
    )
    # gradients agree too (no ties in continuous random data)
    g_fast = jax.jit(jax.grad(lambda x: (ops.max_pool(x, window) ** 2).sum()))(x)
    g_gen = jax.jit(
        jax.grad(lambda x: (jax.lax.reduce_window(x, -np.inf, jax.lax.max, **cfg) ** 2).sum())
    )(x)
    np.testing.assert_allclose(np.asarray(g_fast), np.asarray(g_gen), rtol=1e-6)


POOL_FNS = {
    "max_dilated_ceil": lambda x: ops.max_pool(
        x, 3, stride=2, padding=1, dilation=2, ceil_mode=True
    ),
    "max_overlapping": lambda x: ops.max_pool(x, 3, stride=2, padding=1),
    "max_tiling": lambda x: ops.max_pool(x, 2),
    "avg_ceil_exclude_pad": lambda x: ops.avg_pool(
        x, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False
    ),
    "avg_tiling": lambda x: ops.avg_pool(x, 2),
    "adaptive_avg": lambda x: ops.adaptive_avg_pool(x, (3, 4)),
    "adaptive_max": lambda x: ops.adaptive_max_pool(x, 5),
    "lp": lambda x: ops.lp_pool(x**2 + 1, 2, 2),
    "weighted": lambda x: ops.weighted_avg_pool(x, 3, stride=1, padding=1),
    "global_avg": ops.global_avg_pool,
    "global_max": ops.global_max_pool,
}


@pytest.mark.parametrize("name", list(POOL_FNS))
def test_pools_jit_grad_vmap(name):
    pool = POOL_FNS[name]
    rng = np.random.default_rng(6)
    x = jnp.asarray(rng.normal(size=(3, 2, 7, 6, 4)), jnp.float32)
    v = jnp.asarray(rng.normal(size=x.shape[1:]), jnp.float32)

    def f(x):
        return (pool(x) ** 2).sum()

    eager = pool(x[0])
    np.testing.assert_allclose(np.asarray(jax.jit(pool)(x[0])), np.asarray(eager), rtol=1e-6)
    batched = jax.jit(jax.vmap(pool))(x)
    np.testing.assert_allclose(np.asarray(batched[2]), np.asarray(pool(x[2])), rtol=1e-6)
    # reverse mode under jit agrees with forward mode: <grad f(x), v> == f'(x) v
    g = jax.jit(jax.grad(f))(x[0])
    _, directional = jax.jit(lambda x, v: jax.jvp(f, (x,), (v,)))(x[0], v)
    assert g.shape == x[0].shape and bool(jnp.all(jnp.isfinite(g)))
    np.testing.assert_allclose(float(jnp.vdot(g, v)), float(directional), rtol=1e-4)


def test_pools_keep_bfloat16():
    x = jnp.asarray(np.random.default_rng(7).normal(size=(2, 6, 6, 3)), jnp.bfloat16)
    for y in (
        ops.max_pool(x, 2),
        ops.avg_pool(x, 3, stride=1, padding=1),
        ops.adaptive_avg_pool(x, 4),
        ops.global_avg_pool(x),
        ops.weighted_avg_pool(x, 3),
        ops.lp_pool(jnp.abs(x), 2, 2),
    ):
        assert y.dtype == jnp.bfloat16
    ref = ref_avg_pool(np.asarray(x, np.float64), (3, 3), (1, 1), ((1, 1), (1, 1)), False, True)
    np.testing.assert_allclose(
        np.asarray(ops.avg_pool(x, 3, stride=1, padding=1), np.float32), ref, rtol=1e-2, atol=1e-2
    )


def test_tensorflow_same_average_pooling():
    # TF "SAME" avg pool, window 2 stride 2 on [1..5]: padding (0, 1), padding not counted.
    x = jnp.arange(1.0, 6.0).reshape(1, 5, 1)
    out = ops.avg_pool(x, 2, padding="same", count_include_pad=False)
    np.testing.assert_array_equal(np.asarray(out)[0, :, 0], [1.5, 3.5, 5.0])
    out = ops.avg_pool(x, 2, padding="same")  # PyTorch default: the zero counts
    np.testing.assert_array_equal(np.asarray(out)[0, :, 0], [1.5, 3.5, 2.5])
    out = ops.max_pool(-x, 2, padding="same")  # -inf padding never wins
    np.testing.assert_array_equal(np.asarray(out)[0, :, 0], [-1.0, -3.0, -5.0])


def _ref_tiled_max_grad(x: np.ndarray, window: tuple[int, ...], cotangent: np.ndarray):
    """Gradient of ``sum(cotangent * max_pool(x, window))`` for window = stride: each
    window's cotangent goes to its FIRST maximal element in row-major order (PyTorch's
    and `lax.reduce_window`'s rule)."""
    grad = np.zeros_like(x)
    for out_idx in np.ndindex(*cotangent.shape[:-1]):
        b, *o = out_idx
        for c in range(x.shape[-1]):
            best, best_pos = -np.inf, None
            for offset in np.ndindex(*window):
                pos = (b, *(oi * k + d for oi, k, d in zip(o, window, offset, strict=True)), c)
                if x[pos] > best:
                    best, best_pos = x[pos], pos
            grad[best_pos] += cotangent[(*out_idx, c)]
    return grad


@pytest.mark.parametrize(
    ("spatial", "window"), [((6, 8), (2, 2)), ((9,), (3,)), ((4, 4, 6), (2, 2, 3))]
)
def test_tiling_max_gradient_on_ties_goes_to_first_max(spatial, window):
    # Integer-valued data in [0, 2]: most windows hold ties (as ReLU zeros do).
    rng = np.random.default_rng(11)
    x = rng.integers(0, 3, size=(2, *spatial, 3)).astype(np.float32)
    pool = pooling._pool_setup(jnp.asarray(x), window, None, 0)
    assert pooling._is_tiling(pool)
    out_shape = (2, *(n // k for n, k in zip(spatial, window, strict=True)), 3)
    cot = rng.normal(size=out_shape).astype(np.float32)
    expected = _ref_tiled_max_grad(x, window, cot)

    def fast(x):
        return jnp.sum(jnp.asarray(cot) * ops.max_pool(x, window))

    def general(x):
        y = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, **pooling._window_config(pool))
        return jnp.sum(jnp.asarray(cot) * y)

    np.testing.assert_allclose(np.asarray(jax.jit(jax.grad(fast))(x)), expected, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(jax.jit(jax.grad(general))(x)), expected, rtol=1e-6)
    # Forward-mode agrees with reverse-mode (the rule is a JVP, transposed by JAX).
    tangent = rng.normal(size=x.shape).astype(np.float32)
    _, jvp_out = jax.jvp(fast, (jnp.asarray(x),), (jnp.asarray(tangent),))
    np.testing.assert_allclose(float(jvp_out), float(np.sum(expected * tangent)), rtol=1e-5)
