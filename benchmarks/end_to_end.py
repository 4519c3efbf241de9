"""A whole run as a user runs it: the `mnist` command and the same recipe in plain PyTorch.

    python -m benchmarks.end_to_end --data_dir ../shared/data
    python -m benchmarks.end_to_end --data_dir ../shared/data --rounds 2 --json e2e.json

Back to back, each in a fresh process, with the same glibc malloc settings
(`cnnjax.host_allocator.GLIBC_TUNABLES` in the environment of both; `--malloc=defaults`
gives both glibc's defaults instead) and the same threads (the machine's cores):

  cnnjax   python -m experiments.classify --config=experiments/configs/mnist.py
           (a fresh workdir; JAX's persistent compilation cache in the user's cache folder,
           warm after one earlier run, or with --cold_cache an empty folder every round)
  torch    python -m benchmarks.torch_mnist (`benchmarks/torch_mnist.py`)

Per column: wall time of the whole command, test accuracy, time from the command to the end
of the first step, training images per second (training steps only), and the time from the
test metrics to the process's exit. For cnnjax also the loop efficiency: training images/s
of the real run divided by images/s of the same compiled train step timed alone on one
batch that stays on the devices (`isolated_step_images_per_s`), twice: against the step
timed as `benchmarks.train_step` times it (the host waits for each step) and against the
same steps dispatched back to back (the loop's best case). 1.0 means the loop, the input
pipeline and the logging cost nothing beside the step.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "experiments" / "configs" / "mnist.py"


def malloc_env(mode: str) -> dict[str, str]:
    """The environment of both columns for `--malloc`: 'same' (cnnjax's settings for both)
    or 'defaults' (glibc's defaults for both: cnnjax's own settings off)."""
    from cnnjax.host_allocator import GLIBC_TUNABLES

    env = {k: v for k, v in os.environ.items()
           if k not in ("GLIBC_TUNABLES", "XLA_FLAGS") and not k.startswith("JAX_")}
    if mode == "same":
        env["GLIBC_TUNABLES"] = GLIBC_TUNABLES
    else:
        env["CNNJAX_HOST_ALLOCATOR"] = "0"
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return env


def run_timed(command: list[str], env: dict[str, str]) -> tuple[float, list[tuple[float, str]]]:
    """(wall seconds, [(seconds since start, line)]) of `command`'s stdout + stderr."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    lines = [(time.perf_counter() - start, line.rstrip("\n")) for line in proc.stdout]
    code = proc.wait()
    wall = time.perf_counter() - start
    if code != 0:
        tail = "\n".join(line for _, line in lines[-30:])
        raise RuntimeError(f"{' '.join(command)} exited with {code}:\n{tail}")
    return wall, lines


def _first(lines: list[tuple[float, str]], prefix: str) -> float:
    return next(t for t, line in lines if line.startswith(prefix))


def run_cnnjax(data_dir: Path, env: dict[str, str], cache: Path) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="e2e_cnnjax_"))
    if cache is not None:  # an empty compilation cache (the oneDNN build stays where it is)
        env = {**env, "JAX_COMPILATION_CACHE_DIR": str(cache)}
    wall, lines = run_timed(
        [sys.executable, "-m", "experiments.classify", f"--workdir={workdir / 'run'}",
         f"--config={CONFIG}", f"--config.data_dir={data_dir}"], env)
    rows = [json.loads(line) for line in (workdir / "run" / "metrics.jsonl").open()]
    train = [r for r in rows if r["split"] == "train"]
    batch = 128
    # images / time per logged window (compilation excluded: the first window starts
    # after step 1), combined over the run
    images = [(r["step"] - prev) * batch for prev, r in zip(
        [1] + [r["step"] for r in train[:-1]], train, strict=True)]
    train_s = sum(n / r["images_per_s"] for n, r in zip(images, train, strict=True))
    test = next(r for r in rows if r["split"] == "test")
    return {
        "impl": "cnnjax", "wall_s": wall, "test_accuracy": test["accuracy"],
        "first_step_s": _first(lines, "step 1 done"),
        "train_s": train_s, "images_per_s": sum(images) / train_s,
        "test_to_exit_s": wall - _first(lines, "test (test)"),
        "workdir": str(workdir / "run"),
    }


def run_torch(data_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    wall, lines = run_timed([sys.executable, "-m", "benchmarks.torch_mnist",
                             f"--data_dir={data_dir}"], env)
    out = json.loads(lines[-1][1])
    out.update(wall_s=wall, first_step_s=_first(lines, "step 1 done"),
               test_to_exit_s=wall - _first(lines, "test step"))
    return out


def isolated_step_images_per_s(data_dir: Path, steps: int = 300) -> dict[str, float]:
    """Images/s of the mnist run's own compiled train step (same config, model, optimizer,
    metrics) called `steps` times on one batch placed on the devices once: what the loop
    would reach if the input pipeline, the bookkeeping and the logging cost nothing.

    `blocking`: the host waits for each step before dispatching the next (as
    `benchmarks.train_step` times a step); `pipelined`: every step is dispatched while the one
    before runs and the host waits once at the end (the loop's best case: it also hides the
    ~0.5 ms dispatch of each step)."""
    import jax

    from cnnjax.train.runner.components import build, make_batches
    from cnnjax.train.runner.config import prepare_config

    spec = importlib.util.spec_from_file_location("mnist_config", CONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.data_dir = str(data_dir)
    config = prepare_config(config)
    c = build(config)
    state = c.init_state()
    batches = make_batches(config, config.train_split, train=True, source=c.train_source)
    batch = c.train_step.place(next(batches))
    batches.close()
    for _ in range(20):  # compile and warm up
        state, metrics = c.train_step.placed(state, batch)
    jax.block_until_ready(metrics)
    out = {}
    for mode in ("blocking", "pipelined"):
        start = time.perf_counter()
        for _ in range(steps):
            state, metrics = c.train_step.placed(state, batch)
            if mode == "blocking":
                jax.block_until_ready(metrics)
        jax.block_until_ready(state)
        out[mode] = steps * config.batch_size / (time.perf_counter() - start)
    return out


def _isolated_in_subprocess(data_dir: Path, env: dict[str, str]) -> dict[str, float]:
    code = ("import json, sys; from pathlib import Path; from benchmarks.end_to_end import "
            "isolated_step_images_per_s as f; print(json.dumps(f(Path(sys.argv[1]))))")
    proc = subprocess.run([sys.executable, "-c", code, str(data_dir)], env=env, cwd=REPO,
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def format_table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'impl':<8} {'wall s':>7} {'test acc':>8} {'first step s':>12} {'train s':>8} "
            f"{'train img/s':>11} {'test->exit s':>12} {'loop eff':>15}")
    lines = [head, "-" * len(head)]
    for r in rows:
        eff = (f"{r['loop_efficiency']:.3f} / {r['loop_efficiency_pipelined']:.3f}"
               if "loop_efficiency" in r else "-")
        lines.append(
            f"{r['impl']:<8} {r['wall_s']:>7.1f} {100 * r['test_accuracy']:>7.2f}% "
            f"{r['first_step_s']:>12.1f} {r['train_s']:>8.1f} {r['images_per_s']:>11.0f} "
            f"{r['test_to_exit_s']:>12.1f} {eff:>15}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default=os.environ.get("CNNJAX_DATA_DIR", "../shared/data"))
    parser.add_argument("--rounds", type=int, default=1, help="alternate the columns N times")
    parser.add_argument("--malloc", choices=("same", "defaults"), default="same")
    parser.add_argument("--cold_cache", action="store_true",
                        help="cnnjax compiles from an empty cache folder every round")
    parser.add_argument("--json", default=None, help="write the rows to this path")
    args = parser.parse_args(argv)
    data_dir = Path(args.data_dir).resolve()
    if not (data_dir / "mnist.npz").exists():
        raise SystemExit(f"--data_dir={args.data_dir}: no mnist.npz there")
    env = malloc_env(args.malloc)
    print(f"uptime: {os.getloadavg()} (1/5/15-min load); malloc: {args.malloc}", flush=True)
    rows = []
    for r in range(args.rounds):
        cache = Path(tempfile.mkdtemp(prefix="e2e_cache_")) if args.cold_cache else None
        for impl in ("cnnjax", "torch"):
            row = run_cnnjax(data_dir, env, cache) if impl == "cnnjax" else run_torch(data_dir, env)
            row["round"] = r
            rows.append(row)
            print(format_table([row]).splitlines()[-1], flush=True)
    isolated = _isolated_in_subprocess(data_dir, env)
    for row in rows:
        if row["impl"] == "cnnjax":
            row["isolated_step_images_per_s"] = isolated["blocking"]
            row["isolated_pipelined_images_per_s"] = isolated["pipelined"]
            row["loop_efficiency"] = row["images_per_s"] / isolated["blocking"]
            row["loop_efficiency_pipelined"] = row["images_per_s"] / isolated["pipelined"]
        row["machine"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus"
    print(f"isolated cnnjax train step: {isolated['blocking']:.0f} images/s blocking, "
          f"{isolated['pipelined']:.0f} pipelined (loop eff: real run / each)")
    print(format_table(rows))
    for impl in ("cnnjax", "torch"):
        walls = [r["wall_s"] for r in rows if r["impl"] == impl]
        print(f"{impl}: median wall {np.median(walls):.1f} s over {len(walls)} run(s)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
