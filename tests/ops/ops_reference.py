"""Naive NumPy loop references for cnnjax.ops (independent of lax): one output element at a
time, computed in float64 from the definitions."""

from __future__ import annotations

import itertools
import math

import numpy as np

NP_PAD_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def ref_conv(x, w, b=None, *, stride, pads, dilation, groups=1, padding_mode="zeros"):
    """x (B, *n, C), w (*k, C//g, O), pads ((lo, hi), ...): cross-correlation by loops."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    nd = w.ndim - 2
    ks, (cin_g, out_ch) = w.shape[:nd], w.shape[nd:]
    xp = np.pad(x, ((0, 0), *pads, (0, 0)), mode=NP_PAD_MODE[padding_mode])
    out_sizes = []
    for n, k, s, d in zip(xp.shape[1:-1], ks, stride, dilation, strict=True):
        count = 0
        while count * s + d * (k - 1) < n:
            count += 1
        out_sizes.append(count)
    out_g = out_ch // groups
    y = np.zeros((x.shape[0], *out_sizes, out_ch))
    for pos in itertools.product(*(range(o) for o in out_sizes)):
        for off in itertools.product(*(range(k) for k in ks)):
            idx = tuple(
                p * s + o * d for p, o, s, d in zip(pos, off, stride, dilation, strict=True)
            )
            pixel = xp[(slice(None), *idx)]  # (B, C)
            for g in range(groups):
                xin = pixel[:, g * cin_g : (g + 1) * cin_g]
                y[(slice(None), *pos, slice(g * out_g, (g + 1) * out_g))] += (
                    xin @ w[(*off, slice(None), slice(g * out_g, (g + 1) * out_g))]
                )
    if b is not None:
        y += np.asarray(b, np.float64)
    return y


def ref_conv_transpose(x, w, b=None, *, stride, pads, output_padding, dilation, groups=1):
    """Scatter form of the transposed conv: each input pixel adds ``x[n] W[k]^T`` at
    ``n*s + k*d - lo``; w is (*k, O//g, C)."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    nd = w.ndim - 2
    ks, (out_g, in_ch) = w.shape[:nd], w.shape[nd:]
    in_g = in_ch // groups
    spatial = x.shape[1:-1]
    out_sizes = [
        (n - 1) * s - lo - hi + d * (k - 1) + op + 1
        for n, k, s, d, (lo, hi), op in zip(
            spatial, ks, stride, dilation, pads, output_padding, strict=True
        )
    ]
    y = np.zeros((x.shape[0], *out_sizes, out_g * groups))
    for pos in itertools.product(*(range(n) for n in spatial)):
        for off in itertools.product(*(range(k) for k in ks)):
            idx = [
                p * s + o * d - lo
                for p, o, s, d, (lo, _) in zip(pos, off, stride, dilation, pads, strict=True)
            ]
            if not all(0 <= i < n for i, n in zip(idx, out_sizes, strict=True)):
                continue
            for g in range(groups):
                xin = x[(slice(None), *pos, slice(g * in_g, (g + 1) * in_g))]
                wk = w[(*off, slice(None), slice(g * in_g, (g + 1) * in_g))]  # (O//g, C//g)
                y[(slice(None), *idx, slice(g * out_g, (g + 1) * out_g))] += xin @ wk.T
    if b is not None:
        y += np.asarray(b, np.float64)
    return y


def ref_pool_windows(n, k, s, lo, hi, d, ceil_mode):
    """Window start positions (in input coordinates, may be negative) along one dim:
    every window that fits in the padded input, plus with ceil_mode a partial last window
    starting inside the input or the low padding."""
    eff = d * (k - 1) + 1
    starts = []
    o = 0
    while True:
        start = o * s - lo
        fits = start + eff <= n + hi
        partial = ceil_mode and start < n and start + eff < n + hi + s
        if not (fits or partial):
            break
        starts.append(start)
        o += 1
    return starts


def _pool(x, window, stride, pads, dilation, ceil_mode, reduce):
    x = np.asarray(x, np.float64)
    spatial = x.shape[1:-1]
    starts = [
        ref_pool_windows(n, k, s, lo, hi, d, ceil_mode)
        for n, k, s, (lo, hi), d in zip(spatial, window, stride, pads, dilation, strict=True)
    ]
    y = np.zeros((x.shape[0], *(len(st) for st in starts), x.shape[-1]))
    for pos in itertools.product(*(range(len(st)) for st in starts)):
        per_dim = [
            [st[p] + j * d for j in range(k)]
            for st, p, k, d in zip(starts, pos, window, dilation, strict=True)
        ]
        y[(slice(None), *pos)] = reduce(x, per_dim, spatial, pads)
    return y


def ref_max_pool(x, window, stride, pads, dilation, ceil_mode):
    def reduce(x, per_dim, spatial, pads):
        best = np.full((x.shape[0], x.shape[-1]), -np.inf)
        for idx in itertools.product(*per_dim):
            if all(0 <= i < n for i, n in zip(idx, spatial, strict=True)):
                best = np.maximum(best, x[(slice(None), *idx)])
        return best

    return _pool(x, window, stride, pads, dilation, ceil_mode, reduce)


def ref_avg_pool(x, window, stride, pads, ceil_mode, count_include_pad):
    def reduce(x, per_dim, spatial, pads):
        total = np.zeros((x.shape[0], x.shape[-1]))
        count = 0
        for idx in itertools.product(*per_dim):
            inside = all(0 <= i < n for i, n in zip(idx, spatial, strict=True))
            in_padded = all(
                -lo <= i < n + hi for i, n, (lo, hi) in zip(idx, spatial, pads, strict=True)
            )
            if inside:
                total += x[(slice(None), *idx)]
            if inside or (count_include_pad and in_padded):
                count += 1
        return total / count

    ones = (1,) * len(window)
    return _pool(x, window, stride, pads, ones, ceil_mode, reduce)


def ref_lp_pool(x, p, window, stride, ceil_mode):
    def reduce(x, per_dim, spatial, pads):
        total = np.zeros((x.shape[0], x.shape[-1]))
        for idx in itertools.product(*per_dim):
            if all(0 <= i < n for i, n in zip(idx, spatial, strict=True)):
                total += x[(slice(None), *idx)] ** p
        return total ** (1 / p)

    nd = len(window)
    return _pool(x, window, stride, ((0, 0),) * nd, (1,) * nd, ceil_mode, reduce)


def ref_weighted_avg_pool(x, window, stride, pads, sigma):
    centre = [(k - 1) / 2 for k in window]
    weights = {}
    for off in itertools.product(*(range(k) for k in window)):
        dist2 = sum((o - c) ** 2 for o, c in zip(off, centre, strict=True))
        weights[off] = math.exp(-dist2 / (2 * sigma**2))
    norm = sum(weights.values())

    def reduce(x, per_dim, spatial, pads):
        total = np.zeros((x.shape[0], x.shape[-1]))
        for off in weights:
            idx = tuple(dim[o] for dim, o in zip(per_dim, off, strict=True))
            if all(0 <= i < n for i, n in zip(idx, spatial, strict=True)):
                total += weights[off] / norm * x[(slice(None), *idx)]
        return total

    return _pool(x, window, stride, pads, (1,) * len(window), False, reduce)


def ref_adaptive_pool(x, output_size, reduce):
    x = np.asarray(x, np.float64)
    spatial = x.shape[1:-1]
    y = np.zeros((x.shape[0], *output_size, x.shape[-1]))
    for pos in itertools.product(*(range(o) for o in output_size)):
        box = tuple(
            slice(math.floor(i * n / o), math.ceil((i + 1) * n / o))
            for i, n, o in zip(pos, spatial, output_size, strict=True)
        )
        block = x[(slice(None), *box)]
        y[(slice(None), *pos)] = reduce(block.reshape(x.shape[0], -1, x.shape[-1]), axis=1)
    return y
