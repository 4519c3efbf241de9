"""Per-conv timings of the benchmark models' convolutions: forward, input gradient and kernel
gradient, each timed alone, for XLA's convolution with the YNN default, XLA with Eigen convs,
the oneDNN kernel (`cnnjax.ops.onednn`) and PyTorch (channels-last), side by side in one run.

    python -m benchmarks.conv_kernels [--models simple_cnn,resnet18,unet] [--reps 5]

Each column runs in its own process (XLA flags apply before the backend starts). `xla`
columns use the lowering cnnjax's chooser picks with oneDNN switched off (`CNNJAX_ONEDNN=0`),
i.e. what cnnjax ran before the kernel. Median ms of `--reps` calls after 10 warm-up calls
(oneDNN's first calls of a shape run slower: 0.5-5 ms instead of 0.3 ms for `simple_cnn`'s
first-layer kernel gradient; a run makes thousands).
The numbers feed `cnnjax.ops.onednn.policy.conv_is_faster`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks._conv_shapes import SHAPES
from benchmarks.train_step import time_steps

COLUMNS = {
    "xla_ynn": ({"CNNJAX_ONEDNN": "0"}, ""),
    "xla_eigen": (
        {"CNNJAX_ONEDNN": "0"},
        "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",
    ),
    "onednn": ({"CNNJAX_ONEDNN": "1"}, ""),
    "torch": ({}, ""),
}
PARTS = ("fwd", "dx", "dw")


def _median_ms(fn: Callable[[], Any], reps: int) -> float:
    """Median ms of `reps` calls of `fn` (which must block) after 10 warm-up calls."""
    return float(np.median(time_steps(fn, reps, warmup=10)))


def _inputs(shape: tuple[int, ...], k: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    w = (rng.standard_normal((k, k, shape[-1], out)) * 0.1).astype(np.float32)
    return x, w


def _jax_times(shape, k, out, s, p, reps) -> dict[str, float]:
    import jax

    from cnnjax.ops import conv

    x, w = _inputs(shape, k, out)
    x, w = jax.numpy.asarray(x), jax.numpy.asarray(w)

    def f(x, w):
        return conv(x, w, stride=s, padding=p)

    g = jax.numpy.ones_like(jax.eval_shape(f, x, w))
    fns = {
        "fwd": jax.jit(f),
        "dx": jax.jit(lambda x, w, g: jax.vjp(f, x, w)[1](g)[0]),
        "dw": jax.jit(lambda x, w, g: jax.vjp(f, x, w)[1](g)[1]),
    }
    args = {"fwd": (x, w), "dx": (x, w, g), "dw": (x, w, g)}
    return {
        part: _median_ms(lambda part=part: jax.block_until_ready(fns[part](*args[part])), reps)
        for part in PARTS
    }


def _torch_times(shape, k, out, s, p, reps) -> dict[str, float]:
    import torch

    x, w = _inputs(shape, k, out)
    cl = torch.channels_last
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=cl)
    wt = torch.from_numpy(w).permute(3, 2, 0, 1).contiguous(memory_format=cl)
    y = torch.nn.functional.conv2d(xt, wt, stride=s, padding=p)
    g = torch.ones_like(y)

    def backward(mask):
        return torch.ops.aten.convolution_backward(
            g, xt, wt, None, [s, s], [p, p], [1, 1], False, [0, 0], 1, mask
        )

    def forward():
        return torch.nn.functional.conv2d(xt, wt, stride=s, padding=p)

    with torch.no_grad():
        return {
            "fwd": _median_ms(forward, reps),
            "dx": _median_ms(lambda: backward([True, False, False]), reps),
            "dw": _median_ms(lambda: backward([False, True, False]), reps),
        }


def worker(column: str, models: list[str], reps: int) -> list[list[float]]:
    times = _torch_times if column == "torch" else _jax_times
    rows = []
    for model in models:
        for shape, k, out, s, p, _ in SHAPES[model]:
            t = times(shape, k, out, s, p, reps)
            rows.append([t[part] for part in PARTS])
    return rows


def main(argv: list[str] | None = None) -> dict[str, list[list[float]]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(SHAPES))
    parser.add_argument("--columns", default=",".join(COLUMNS))
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    columns = [c for c in args.columns.split(",") if c]
    bad = [m for m in models if m not in SHAPES] + [c for c in columns if c not in COLUMNS]
    if bad or args.reps < 1:
        raise SystemExit(f"unknown {bad} (models {list(SHAPES)}, columns {list(COLUMNS)})")
    if args.worker is not None:
        print(json.dumps(worker(args.worker, models, args.reps)))
        return {}
    results = {}
    for column in columns:
        env_extra, flags = COLUMNS[column]
        env = {**os.environ, **env_extra}
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flags}".strip()
        cmd = [sys.executable, "-m", "benchmarks.conv_kernels", "--worker", column]
        cmd += ["--models", ",".join(models), "--reps", str(args.reps)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"column {column} failed:\n{proc.stderr[-3000:]}")
        results[column] = json.loads(proc.stdout.strip().splitlines()[-1])
    _print(models, columns, results)
    return results


def _print(models: list[str], columns: list[str], results: dict[str, list[list[float]]]) -> None:
    head = f"{'conv':<36}" + "".join(f"{c + ' ' + p:>15}" for c in columns for p in PARTS)
    print(head)
    i = 0
    totals = {c: 0.0 for c in columns}
    for model in models:
        for shape, k, out, s, _, _ in SHAPES[model]:
            label = f"{model[:6]} {shape} k{k}s{s}->{out}"
            cells = "".join(f"{results[c][i][j]:>15.2f}" for c in columns for j in range(3))
            print(f"{label:<36}{cells}")
            for c in columns:
                totals[c] += sum(results[c][i])
            i += 1
    print("total fwd+dx+dw ms: " + ", ".join(f"{c} {t:.0f}" for c, t in totals.items()))


if __name__ == "__main__":
    main()
