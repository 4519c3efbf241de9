"""Numerics of cnnjax's CPU convolution paths against float64, by a method that does not sit
on a kink.

    python -m benchmarks.numerics [--seeds 3] [--batch 8]

Method: ResNet-18 (CIFAR stem, batch norm in training mode) with GELU instead of ReLU, so
float32 rounding cannot flip a unit across ReLU's kink at zero (with ReLU, each flip moves a
weight gradient by ~1e-2 relative on a small batch, whatever the conv path). For each path and
each seed (fresh parameters and batch), the loss and every parameter gradient in float32 are
compared with the same computation in float64 (`jax_enable_x64`, parameters and inputs cast);
reported: the loss's relative error and the largest per-leaf ``max|g32 - g64| / max|g64|``,
worst over seeds. Each path runs in its own process (XLA flags apply before the backend):

  xla_ynn     XLA's default (convolutions on YNNPACK), oneDNN off
  xla_eigen   ``--xla_cpu_experimental_ynn_fusion_type=-individual_convolution``, oneDNN off
  ynn_flags   ``--xla_cpu_experimental_ynn_fusion_type=dot,eltwise,reduce``, oneDNN off
  onednn      cnnjax's default: oneDNN convolutions, XLA's default elsewhere
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

PATHS = {
    "xla_ynn": ({"CNNJAX_ONEDNN": "0"}, ""),
    "xla_eigen": (
        {"CNNJAX_ONEDNN": "0"},
        "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",
    ),
    "ynn_flags": (
        {"CNNJAX_ONEDNN": "0"},
        "--xla_cpu_experimental_ynn_fusion_type=dot,eltwise,reduce",
    ),
    "onednn": ({"CNNJAX_ONEDNN": "1"}, ""),
}


def worker(seeds: int, batch: int) -> dict[str, float]:
    """Worst relative errors of loss and gradients over `seeds`, float32 vs float64."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax

    jax.config.update("jax_enable_x64", True)
    from cnnjax import models

    def make(dtype):
        kw = dict(num_classes=10, stem="cifar", act=nn.gelu, dtype=dtype, param_dtype=dtype)
        return models.create("resnet18", **kw)

    def grad_fn(model):
        def loss_fn(params, stats, x, y):
            variables = {"params": params, **stats}
            logits, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
            return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))

        return jax.jit(jax.value_and_grad(loss_fn))

    model = make(jnp.float32)
    grad, grad64 = grad_fn(model), grad_fn(make(jnp.float64))
    worst = {"loss": 0.0, "grad": 0.0}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((batch, 32, 32, 3)).astype(np.float32)
        y = rng.integers(0, 10, batch).astype(np.int32)
        variables = model.init(jax.random.key(seed), jnp.asarray(x), train=False)
        params = variables["params"]
        stats = {k: v for k, v in variables.items() if k != "params"}
        l32, g32 = grad(params, stats, x, y)
        params64, stats64 = jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), (params, stats))
        l64, g64 = grad64(params64, stats64, x.astype(np.float64), y)
        assert l64.dtype == jnp.float64 and l32.dtype == jnp.float32
        worst["loss"] = max(worst["loss"], abs(float(l32) - float(l64)) / abs(float(l64)))
        for a, b in zip(jax.tree.leaves(g32), jax.tree.leaves(g64), strict=True):
            a, b = np.asarray(a, np.float64), np.asarray(b)
            worst["grad"] = max(worst["grad"], float(np.max(np.abs(a - b)) / np.max(np.abs(b))))
    return worst


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.batch < 1:
        raise SystemExit("--seeds and --batch must be >= 1")
    if args.worker:
        print(json.dumps(worker(args.seeds, args.batch)))
        return {}
    paths = [p for p in args.paths.split(",") if p]
    if any(p not in PATHS for p in paths):
        raise SystemExit(f"--paths={args.paths!r}: expected a comma list of {', '.join(PATHS)}")
    out = {}
    for path in paths:
        env_extra, flags = PATHS[path]
        env = {**os.environ, **env_extra}
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flags}".strip()
        cmd = [sys.executable, "-m", "benchmarks.numerics", "--worker"]
        cmd += ["--seeds", str(args.seeds), "--batch", str(args.batch)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"path {path} failed:\n{proc.stderr[-3000:]}")
        out[path] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{path:<10} loss rel err {out[path]['loss']:.2e}   "
              f"worst gradient leaf rel err {out[path]['grad']:.2e}")  # fmt: skip
    return out


if __name__ == "__main__":
    main()
