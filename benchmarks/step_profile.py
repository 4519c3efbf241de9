"""Where a training step's time goes: convolutions against everything else, cnnjax next to
PyTorch channels-last, from each framework's own profiler.

    python -m benchmarks.step_profile [--models resnet18,unet] [--steps 3]

Same models, batches and optimiser as `benchmarks.train_step` (each column in its own
process). cnnjax: `jax.profiler.trace` of `--steps` compiled training steps; every XLA op's
duration is read from the Perfetto trace, and the oneDNN FFI calls (``ffi_call``) are the
convolutions; also printed: the steps' minor page faults. torch: `torch.profiler`,
``aten::mkldnn_convolution`` + ``aten::convolution_backward`` self time are the convolutions.
Profiling slows a step down by a few percent; the split, not the total, is the point.
Prints ms per step: step, convs, other ops, and the largest other ops.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
from typing import Any

from benchmarks.train_step import MODELS

TORCH_CONV_OPS = ("aten::mkldnn_convolution", "aten::convolution_backward")
SKIP_JAX = ("ThunkExecutor", "$", "PjitFunction", "CommonPjRt", "Slinky", "ParseArguments", "end:")


def _kind(name: str) -> str:
    """``broadcast_subtract_fusion.13`` -> ``broadcast_subtract_fusion``."""
    return name.rstrip("0123456789").rstrip(".")


def profile_cnnjax(model: str, steps: int) -> dict[str, Any]:
    import jax  # importing JAX starts no thread; its backend starts in _cnnjax_steps

    import cnnjax  # noqa: F401  (its malloc settings, before the backend's threads)
    from benchmarks.train_step import _cnnjax_steps

    _, parts = _cnnjax_steps(model, ("train",))
    step, _ = parts["train"]
    state, batch = parts["state"], parts["batch"]
    for _ in range(3):
        state, _ = jax.block_until_ready(step(state, batch))
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    with tempfile.TemporaryDirectory() as logdir:
        with jax.profiler.trace(logdir, create_perfetto_trace=True):
            for _ in range(steps):
                state, _ = jax.block_until_ready(step(state, batch))
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        (trace,) = glob.glob(f"{logdir}/**/perfetto_trace.json.gz", recursive=True)
        events = json.load(gzip.open(trace))["traceEvents"]
    by_kind: collections.Counter = collections.Counter()
    step_ms = 0.0
    for e in events:
        if e.get("ph") != "X":
            continue
        if e["name"] == "ThunkExecutor::Execute":
            step_ms += e["dur"] / 1000 / steps
        elif not e["name"].startswith(SKIP_JAX):
            by_kind[_kind(e["name"])] += e["dur"] / 1000 / steps
    conv = by_kind.pop("ffi_call", 0.0)
    return {"step": step_ms, "conv": conv, "other": by_kind, "faults": faults / steps}


def profile_torch(model: str, steps: int) -> dict[str, Any]:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from benchmarks._torch_models import MODELS as TORCH_MODELS
    from benchmarks.train_step import LEARNING_RATE, MOMENTUM, make_batch

    torch.manual_seed(0)  # the model, batch and optimiser of train_step.run_torch
    spec = MODELS[model]
    cl = torch.channels_last
    net = TORCH_MODELS[model](spec["shape"][-1], spec["classes"]).to(memory_format=cl)
    opt = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
    batch = make_batch(model)
    x = torch.from_numpy(batch["image"]).permute(0, 3, 1, 2).contiguous(memory_format=cl)
    y = torch.from_numpy(batch.get("label", batch.get("mask"))).long()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()

    for _ in range(3):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    self_ms = {a.key: a.self_cpu_time_total / 1000 / steps for a in prof.key_averages()}
    total = sum(self_ms.values())
    conv = sum(self_ms.get(k, 0.0) for k in TORCH_CONV_OPS)
    other = collections.Counter({k: v for k, v in self_ms.items() if k not in TORCH_CONV_OPS})
    return {"step": total, "conv": conv, "other": other, "faults": None}


def _print(model: str, column: str, r: dict[str, Any]) -> None:
    other = sum(r["other"].values())
    faults = "" if r["faults"] is None else f", {r['faults']:.0f} page faults/step"
    print(
        f"{model:<10} {column:<20} step {r['step']:7.1f} ms: convs {r['conv']:7.1f}, "
        f"other ops {other:6.1f}{faults}"
    )
    top = ", ".join(f"{k} {v:.1f}" for k, v in r["other"].most_common(6))
    print(f"{'':<31} largest other ops (ms): {top}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="resnet18,unet")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--worker", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        column, model = args.worker
        fn = profile_cnnjax if column == "cnnjax" else profile_torch
        print(json.dumps(fn(model, args.steps)))
        return
    models = [m for m in args.models.split(",") if m]
    bad = [m for m in models if m not in MODELS]
    if bad or args.steps < 1:
        raise SystemExit(f"unknown models {bad} (expected some of {list(MODELS)}); --steps >= 1")
    for model in models:
        for column in ("cnnjax", "torch_channels_last"):
            cmd = [
                sys.executable,
                "-m",
                "benchmarks.step_profile",
                "--worker",
                column,
                model,
                "--steps",
                str(args.steps),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
            if proc.returncode != 0:
                raise RuntimeError(f"{column} {model} failed:\n{proc.stderr[-3000:]}")
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            result["other"] = collections.Counter(result["other"])
            _print(model, column, result)


if __name__ == "__main__":
    main()
