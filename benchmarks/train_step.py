"""Training- and eval-step throughput of cnnjax against plain Flax and PyTorch on the CPU.

    python -m benchmarks.train_step                                   # everything
    python -m benchmarks.train_step --models simple_cnn --steps 20 --json out.json
    python -m benchmarks.train_step --impls cnnjax,flax --modes train

Models (float32, SGD with momentum 0.9, lr 0.01; parameter counts asserted equal across impls):
  simple_cnn  Keras MNIST CNN, 28x28x1, batch 128, 10 classes, cross-entropy
  resnet18    ResNet-18 with the CIFAR stem, 32x32x3, batch 64, 10 classes, batch norm
  unet        2D U-Net, base 32, depth 4, 128x128x3, batch 8, batch norm, 2x2 up-convs,
              2 classes, per-pixel cross-entropy

Columns (`--impls`):
  cnnjax               `cnnjax.models.create` + `cnnjax.train.make_train_step` (strategy "jit")
  flax                 the same architecture in plain `flax.linen` stock layers + `jax.jit`
  torch_nchw           PyTorch eager, NCHW             (skipped with a note without torch)
  torch_channels_last  PyTorch eager, channels-last    (skipped with a note without torch)

Each (model, impl) runs in its own process, so every column starts from the same state and
XLA flags (`--xla-flags`, or cnnjax's own defaults) apply before JAX starts its backend.
Timing: `--warmup` steps, then `--steps` steps or more, until they add up to `--min-seconds`
(2 s by default: a 15 ms step gets ~130 samples), each blocked on (`block_until_ready`, or
torch's synchronous CPU execution); min / median / max ms per step; compilation excluded
(jax: `lower(...).compile()` timed separately as `compile_s`; the compiled step is called).

Allocator: every worker, jax or torch, runs with the same glibc malloc settings (`--malloc
same`, the default: `GLIBC_TUNABLES` set to cnnjax's `host_allocator` settings, one arena,
no mmap-served chunks, no trim), or every worker with glibc's defaults (`--malloc defaults`:
cnnjax's own settings turned off too). With glibc's defaults PyTorch page-faults on its
activations every step, depending on what the script allocated before: comparing cnnjax's
settings with PyTorch's defaults would measure the allocator, not the step. The lever
`~host_allocator` gives one column glibc's defaults under `--malloc same`.

Peak memory: jax: `compiled.memory_analysis()` (arguments + outputs - aliased + temporaries,
XLA's static buffer assignment); torch: peak resident set size of the worker process
(`resource.getrusage`) minus its size before the model was built (includes allocator caching).
FLOPs per step: analytic, the same for every column (`benchmarks._flops`: multiply-adds of
the convolutions and matrix products of the forward pass, x3 for a training step); XLA's
cost analysis cannot see inside the oneDNN custom calls. MFU: achieved FLOP/s divided by the
best 2048x2048 float32 matmul rate measured (jax and torch) at the start of the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

MODELS: dict[str, dict[str, Any]] = {
    "simple_cnn": dict(shape=(128, 28, 28, 1), classes=10, task="classification", options={}),
    "resnet18": dict(
        shape=(64, 32, 32, 3), classes=10, task="classification", options={"stem": "cifar"}
    ),
    "unet": dict(
        shape=(8, 128, 128, 3),
        classes=2,
        task="segmentation",
        options={"depth": 4, "base_features": 32, "norm": "batch"},
    ),
}
IMPLS = ("cnnjax", "flax", "torch_nchw", "torch_channels_last")
# Lever variants of the jax columns, to measure each lever side by side in one run:
# "cnnjax~conv_gemm" turns a cnnjax lever off, "flax+ynn" adds XLA flags; they combine,
# e.g. "cnnjax~upconv~pool_reshape+ynn+greedy".
LEVERS_OFF = {
    "conv_gemm": "every conv on lax.conv_general_dilated (no slices+GEMM lowering)",
    "upconv": "transposed convs on the general lax path (no kernel==stride einsum)",
    "pool_reshape": "pooling through lax.reduce_window (no window==stride reshape)",
    "donate": "train step without buffer donation",
    "onednn": "convolutions on XLA (CNNJAX_ONEDNN=0), not the oneDNN kernel",
    "batch_norm": "batch norm differentiated by JAX (Flax's formula), not the hand-written VJP",
    "host_allocator": "glibc's default malloc for this column (no GLIBC_TUNABLES, "
                      "CNNJAX_HOST_ALLOCATOR=0)",
}
FLAG_SETS = {
    "ynn": "--xla_cpu_experimental_ynn_fusion_type=dot,eltwise,reduce",
    "greedy": "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY",
    "nofuse": "--xla_cpu_experimental_ynn_fusion_type=",
    "eigen": "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",
}
MODES = ("train", "eval")
LEARNING_RATE, MOMENTUM = 0.01, 0.9


def make_batch(model: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Random images (N(0, 1)) and labels / masks for `model`, channels-last, float32."""
    spec = MODELS[model]
    rng = np.random.default_rng(seed)
    image = rng.standard_normal(spec["shape"], dtype=np.float32)
    if spec["task"] == "classification":
        target = rng.integers(0, spec["classes"], spec["shape"][0]).astype(np.int32)
        return {"image": image, "label": target}
    mask = rng.integers(0, spec["classes"], spec["shape"][:-1]).astype(np.int32)
    return {"image": image, "mask": mask}


def time_steps(
    step: Callable[[], Any], steps: int, warmup: int, min_seconds: float = 0.0
) -> list[float]:
    """Milliseconds of each call of `step` (which must block) after `warmup`: `steps` calls,
    more while they add up to less than `min_seconds` (a 15 ms step needs many samples for a
    median that one disturbed moment of the machine cannot move)."""
    for _ in range(warmup):
        step()
    times: list[float] = []
    while len(times) < steps or sum(times) < 1000.0 * min_seconds:
        start = time.perf_counter()
        step()
        times.append(1000.0 * (time.perf_counter() - start))
    return times


def _row(model: str, impl: str, mode: str, times: list[float], **extra: Any) -> dict[str, Any]:
    batch = MODELS[model]["shape"][0]
    median = float(np.median(times))
    return {
        "model": model,
        "impl": impl,
        "mode": mode,
        "batch_size": batch,
        "images_per_s": 1000.0 * batch / median,
        "ms_per_step_min": float(np.min(times)),
        "ms_per_step_median": median,
        "ms_per_step_max": float(np.max(times)),
        "steps": len(times),
        **extra,
    }


# ------------------------------------------------------------------------------- jax


def _jax_stats(compiled: Any) -> dict[str, Any]:
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else {}
    mem = compiled.memory_analysis()
    peak = None
    if mem is not None:
        peak = (
            mem.argument_size_in_bytes
            + mem.output_size_in_bytes
            - mem.alias_size_in_bytes
            + mem.temp_size_in_bytes
        ) / 2**20
    return {"xla_flops_per_step": float(cost.get("flops", 0.0)) or None, "peak_memory_mb": peak}


def parse_impl(impl: str) -> tuple[str, set[str], list[str]]:
    """``"cnnjax~upconv+ynn"`` -> ("cnnjax", {"upconv"}, ["ynn"]) (base, levers off, flag sets)."""
    head, *flags = impl.split("+")
    base, *off = head.split("~")
    if base not in IMPLS or (base.startswith("torch") and (off or flags)):
        raise ValueError(f"impl {impl!r}: expected one of {IMPLS} (jax ones with ~lever, +flags)")
    if base == "flax" and off:
        raise ValueError(f"impl {impl!r}: levers (~) apply to cnnjax only")
    bad = [o for o in off if o not in LEVERS_OFF] + [f for f in flags if f not in FLAG_SETS]
    if bad:
        raise ValueError(
            f"impl {impl!r}: unknown {bad}; levers {sorted(LEVERS_OFF)}, flags {sorted(FLAG_SETS)}"
        )
    return base, set(off), flags


def _levers_off(off: set[str]) -> None:
    """Turns cnnjax levers off in this (worker) process by replacing their dispatch."""
    from cnnjax.ops import lowering, normalization, onednn, pooling

    if "conv_gemm" in off:
        lowering.choose_conv_lowering = lambda *args: "xla"
    if "upconv" in off:
        lowering.choose_conv_transpose_lowering = lambda *args: "xla"
    if "pool_reshape" in off:
        pooling._is_tiling = lambda pool: False
    if "onednn" in off:
        onednn.set_enabled(False)
    if "batch_norm" in off:
        # the same forward formula, differentiated by JAX instead of the hand-written VJP
        normalization.batch_norm_train = lambda *args: normalization._forward(*args)[0]


def _cnnjax_steps(
    model_name: str, modes: tuple[str, ...], off: frozenset[str] = frozenset()
) -> tuple[int, dict[str, Any]]:
    """(parameter count, {"state", "batch", mode: (step, is_train)}) for the cnnjax column."""
    from cnnjax import models, train

    _levers_off(set(off))

    spec = MODELS[model_name]
    model = models.create(model_name, num_classes=spec["classes"], **spec["options"])
    if spec["task"] == "classification":
        task = train.classification()
    else:
        task = train.segmentation(spec["classes"])
    tx = train.make_optimizer({"name": "sgd", "learning_rate": LEARNING_RATE, "momentum": MOMENTUM})
    mesh = train.make_mesh()
    state = train.create_train_state(model, tx, 0, spec["shape"], mesh=mesh)
    batch = train.shard_batch(make_batch(model_name), mesh=mesh)
    out: dict[str, Any] = {}
    if "train" in modes:
        step = train.make_train_step(model, task, tx, mesh=mesh, donate="donate" not in off)
        out["train"] = (step, True)
    if "eval" in modes:
        out["eval"] = (train.make_eval_step(model, task, mesh=mesh), False)
    return train.param_count(state.params), {"state": state, "batch": batch, **out}


def _flax_steps(model_name: str, modes: tuple[str, ...]) -> tuple[int, dict[str, Any]]:
    """The plain-Flax column: `model.init`, `optax.sgd`, a hand-written `jax.jit` step."""
    import jax
    import jax.numpy as jnp
    import optax

    from benchmarks._flax_models import MODELS as FLAX_MODELS

    spec = MODELS[model_name]
    model = FLAX_MODELS[model_name](num_classes=spec["classes"])
    variables = model.init(jax.random.key(0), jnp.zeros(spec["shape"], jnp.float32))
    params = variables["params"]
    stats = {k: v for k, v in variables.items() if k != "params"}
    tx = optax.sgd(LEARNING_RATE, momentum=MOMENTUM)
    state = (params, stats, tx.init(params))
    batch = {k: jnp.asarray(v) for k, v in make_batch(model_name).items()}
    target_key = "label" if spec["task"] == "classification" else "mask"

    def loss_fn(params, stats, batch):
        variables = {"params": params, **stats}
        if stats:
            logits, new = model.apply(variables, batch["image"], train=True, mutable=list(stats))
        else:
            logits, new = model.apply(variables, batch["image"], train=True), stats
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch[target_key])
        return jnp.mean(loss), (logits, new)

    def train_step(state, batch):
        params, stats, opt = state
        (loss, (_, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, stats, batch
        )
        updates, opt = tx.update(grads, opt, params)
        return (optax.apply_updates(params, updates), new_stats, opt), loss

    def eval_step(state, batch):
        params, stats, _ = state
        logits = model.apply({"params": params, **stats}, batch["image"], train=False)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch[target_key])
        return jnp.mean(loss)

    out: dict[str, Any] = {}
    if "train" in modes:
        out["train"] = (jax.jit(train_step, donate_argnums=(0,)), True)
    if "eval" in modes:
        out["eval"] = (jax.jit(eval_step), False)
    count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    return count, {"state": state, "batch": batch, **out}


def run_jax(
    model: str, impl: str, modes: tuple[str, ...], steps: int, warmup: int, min_seconds: float
) -> list:
    import jax

    base, off, _ = parse_impl(impl)
    if base == "cnnjax":
        count, parts = _cnnjax_steps(model, modes, frozenset(off))
    else:
        count, parts = _flax_steps(model, modes)
    rows = []
    for mode in modes:
        fn, is_train = parts[mode]
        start = time.perf_counter()
        compiled = fn.lower(parts["state"], parts["batch"]).compile()
        compile_s = time.perf_counter() - start
        holder = {"state": parts["state"]}
        extra = getattr(fn, "defaults", ())  # a cnnjax train step's `halted` input

        def call(compiled=compiled, holder=holder, is_train=is_train, extra=extra) -> None:
            out = compiled(holder["state"], parts["batch"], *extra)
            if is_train:
                holder["state"] = out[0]
            jax.block_until_ready(out)

        times = time_steps(call, steps, warmup, min_seconds)
        parts["state"] = holder["state"]
        rows.append(
            _row(
                model, impl, mode, times, compile_s=compile_s, params=count, **_jax_stats(compiled)
            )
        )
    return rows


# ------------------------------------------------------------------------------- torch


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_torch(
    model: str, impl: str, modes: tuple[str, ...], steps: int, warmup: int, min_seconds: float
) -> list:
    import torch

    from benchmarks._torch_models import MODELS as TORCH_MODELS

    torch.manual_seed(0)
    spec = MODELS[model]
    base_rss = _rss_mb()
    fmt = torch.channels_last if impl == "torch_channels_last" else torch.contiguous_format
    net = TORCH_MODELS[model](spec["shape"][-1], spec["classes"]).to(memory_format=fmt)
    opt = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
    batch = make_batch(model)
    x = torch.from_numpy(batch["image"]).permute(0, 3, 1, 2).contiguous(memory_format=fmt)
    y = torch.from_numpy(batch.get("label", batch.get("mask"))).long()
    count = sum(p.numel() for p in net.parameters())

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()

    def eval_step() -> None:
        with torch.no_grad():
            torch.nn.functional.cross_entropy(net(x), y)

    rows = []
    for mode in modes:
        net.train(mode == "train")
        times = time_steps(train_step if mode == "train" else eval_step, steps, warmup,
                           min_seconds)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base_rss
        rows.append(
            _row(
                model,
                impl,
                mode,
                times,
                compile_s=0.0,
                params=count,
                peak_memory_mb=peak,
                torch_threads=torch.get_num_threads(),
            )
        )
    return rows


# ------------------------------------------------------------------------------- matmul peak


def matmul_peak(n: int = 2048, reps: int = 10) -> dict[str, float]:
    """GFLOP/s of an n x n float32 matmul (median of `reps`), in jax and (if present) torch."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    f(a).block_until_ready()
    flop = 2.0 * n**3
    times = time_steps(lambda: f(a).block_until_ready(), reps, 2)
    out = {"jax": flop / np.median(times) / 1e6}
    try:
        import torch
    except ImportError:
        return out
    t = torch.randn(n, n)
    times = time_steps(lambda: t @ t, reps, 2)
    out["torch"] = flop / np.median(times) / 1e6
    return out


# ------------------------------------------------------------------------------- driver


def worker(job: dict[str, Any]) -> Any:
    if job["kind"] == "matmul":
        return matmul_peak()
    if job["kind"] == "flops":
        from benchmarks._flops import model_flops

        return {m: model_flops(m, MODELS[m]["shape"], MODELS[m]["classes"]) for m in job["models"]}
    modes = tuple(job["modes"])
    run = run_torch if parse_impl(job["impl"])[0].startswith("torch") else run_jax
    return run(job["model"], job["impl"], modes, job["steps"], job["warmup"],
               job["min_seconds"])


def malloc_env(mode: str, glibc_defaults: bool = False) -> dict[str, str]:
    """`os.environ` with the malloc settings of `--malloc` (`glibc_defaults`: this column
    gets glibc's defaults whatever the mode)."""
    from cnnjax.host_allocator import GLIBC_TUNABLES

    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    if mode == "same" and not glibc_defaults:
        env["GLIBC_TUNABLES"] = GLIBC_TUNABLES
    else:
        env["CNNJAX_HOST_ALLOCATOR"] = "0"
    return env


def _spawn(job: dict[str, Any], xla_flags: str | None, malloc: str = "same") -> Any:
    off, flag_sets = set(), []
    if job.get("impl"):
        _, off, flag_sets = parse_impl(job["impl"])
    env = malloc_env(malloc, glibc_defaults="host_allocator" in off)
    if xla_flags is not None:
        env["XLA_FLAGS"] = xla_flags
    if job.get("impl"):
        extra = [FLAG_SETS[f] for f in flag_sets]
        if extra:
            env["XLA_FLAGS"] = " ".join([env.get("XLA_FLAGS", ""), *extra]).strip()
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.train_step", "--worker", json.dumps(job)],
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {job} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def format_table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'model':<11} {'impl':<28} {'mode':<5} {'batch':>5} {'img/s':>8} {'ms min':>8} "
        f"{'ms med':>8} {'ms max':>8} {'vs best torch':>13} {'compile s':>9} {'peak MB':>8} "
        f"{'GFLOP/step':>10} {'MFU':>6}"
    )
    lines = [head, "-" * len(head)]
    best_torch: dict[tuple[str, str], float] = {}
    for r in rows:
        if r["impl"].startswith("torch"):
            key = (r["model"], r["mode"])
            best_torch[key] = min(best_torch.get(key, np.inf), r["ms_per_step_median"])
    for r in rows:
        ref = best_torch.get((r["model"], r["mode"]))
        speed = f"{ref / r['ms_per_step_median']:.2f}x" if ref else "-"
        gflop = f"{r['flops_per_step'] / 1e9:.2f}" if r.get("flops_per_step") else "-"
        mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") is not None else "-"
        peak = f"{r['peak_memory_mb']:.0f}" if r.get("peak_memory_mb") is not None else "-"
        lines.append(
            f"{r['model']:<11} {r['impl']:<28} {r['mode']:<5} {r['batch_size']:>5} "
            f"{r['images_per_s']:>8.1f} {r['ms_per_step_min']:>8.1f} "
            f"{r['ms_per_step_median']:>8.1f} {r['ms_per_step_max']:>8.1f} {speed:>13} "
            f"{r['compile_s']:>9.1f} {peak:>8} {gflop:>10} {mfu:>6}"
        )
    return "\n".join(lines)


def _csv(value: str, allowed: tuple[str, ...], name: str) -> list[str]:
    items = [v for v in value.split(",") if v]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise SystemExit(f"--{name}={value!r}: expected a comma list of {', '.join(allowed)}")
    return items


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--impls", default=",".join(IMPLS))
    parser.add_argument("--modes", default="train,eval")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per (model, impl)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps after compiling")
    parser.add_argument("--min-seconds", type=float, default=2.0,
                        help="time more than --steps steps until they take this long")
    parser.add_argument("--rounds", type=int, default=1, help="repeat all columns, interleaved")
    parser.add_argument(
        "--xla-flags", default=None, help="XLA_FLAGS for the jax workers (default: inherited)"
    )
    parser.add_argument("--malloc", choices=("same", "defaults"), default="same",
                        help="glibc malloc of every column: cnnjax's settings for all "
                        "(GLIBC_TUNABLES) or glibc's defaults for all")
    parser.add_argument("--json", default=None, help="write the rows to this path")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(json.loads(args.worker))))
        return []
    if args.steps < 1 or args.warmup < 0 or args.rounds < 1 or not args.min_seconds >= 0:
        raise SystemExit("--steps and --rounds must be >= 1, --warmup and --min-seconds >= 0")
    models = _csv(args.models, tuple(MODELS), "models")
    impls = [i for i in args.impls.split(",") if i]
    for impl in impls:
        try:
            parse_impl(impl)
        except ValueError as err:
            raise SystemExit(f"--impls: {err}") from None
    modes = _csv(args.modes, MODES, "modes")
    if not _torch_available() and any(i.startswith("torch") for i in impls):
        print("note: torch is not importable; skipping the torch columns "
              "(pip install torch==2.13.0 gives the CPU build)")  # fmt: skip
        impls = [i for i in impls if not i.startswith("torch")]

    peak = _spawn({"kind": "matmul"}, args.xla_flags, args.malloc)
    peak_gflops = max(peak.values())
    print(
        "matmul 2048x2048 f32: "
        + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peak.items())
        + f"; MFU is relative to {peak_gflops:.0f} GFLOP/s; malloc: {args.malloc} for every "
        "column" + (f" (GLIBC_TUNABLES={malloc_env('same')['GLIBC_TUNABLES']})"
                    if args.malloc == "same" else " (glibc's defaults)")
    )
    flops = _spawn({"kind": "flops", "models": models}, args.xla_flags, args.malloc)
    pooled: dict[tuple[str, str, str], dict[str, Any]] = {}
    for _ in range(args.rounds):
        for model in models:
            for impl in impls:
                job = dict(kind="step", model=model, impl=impl, modes=modes)
                job.update(steps=args.steps, warmup=args.warmup, min_seconds=args.min_seconds)
                for r in _spawn(job, args.xla_flags, args.malloc):
                    key = (r["model"], r["impl"], r["mode"])
                    if key in pooled:  # keep the round with the best median (least disturbed)
                        if r["ms_per_step_median"] < pooled[key]["ms_per_step_median"]:
                            pooled[key] = r
                    else:
                        pooled[key] = r
                print(f"  done {model} / {impl}", file=sys.stderr, flush=True)
    rows = list(pooled.values())
    for model in models:
        counts = {r["impl"]: r["params"] for r in rows if r["model"] == model}
        if len(set(counts.values())) > 1:
            raise AssertionError(f"{model}: parameter counts differ across impls: {counts}")
    for r in rows:
        f = r["flops_per_step"] = flops[r["model"]][r["mode"]]
        r["mfu"] = f / (r["ms_per_step_median"] / 1000.0) / (peak_gflops * 1e9)
        r["malloc"] = args.malloc
        r["matmul_peak_gflops"] = peak_gflops
        r["machine"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus"
        r["xla_flags"] = (
            args.xla_flags if args.xla_flags is not None else os.environ.get("XLA_FLAGS", "")
        )
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
