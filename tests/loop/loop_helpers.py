"""Helpers of the loop tests: a tiny config, the subprocess driver, the batch log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("run_training.py")
TOTAL_STEPS = 12


def tiny_config(**overrides) -> dict:
    """resnet_tiny on 16x16 shapes, 64 examples, global batch 16 (4 steps per epoch)."""
    config = {
        "seed": 3,
        "model": "resnet_tiny",
        "dataset": "shapes",
        "dataset_options": {"num_examples": 64, "image_size": 16},
        "batch_size": 16,
        "num_epochs": None,
        "num_train_steps": TOTAL_STEPS,
        "log_every_steps": 2,
        "eval_every_steps": 3,
        "checkpoint_every_steps": 3,
        "keep_checkpoints": 2,
        "keep_best": 2,
        "optimizer": {"name": "adamw", "learning_rate": 0.01},
        "augment": "random_crop(padding=2)|hflip",
    }
    config.update(overrides)
    return config


def driver_command(workdir: Path, config: dict, *flags: str, devices: int = 8
                   ) -> tuple[list[str], dict[str, str]]:
    """(argv, env) of `run_training.py` on `config` with `devices` CPU devices."""
    config_path = workdir.parent / f"{workdir.name}.config.json"
    config_path.write_text(json.dumps(config))
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    # Speed only (every run of a test uses the same settings, so results stay comparable):
    # unoptimised XLA compiles 3x faster, and the persistent cache skips recompiling
    # the same steps in the next subprocess.
    env["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
    env["JAX_COMPILATION_CACHE_DIR"] = str(Path(tempfile.gettempdir()) / "cnnjax_tests_jax_cache")
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return [sys.executable, str(DRIVER), str(workdir), str(config_path), *flags], env


def run_driver(workdir: Path, config: dict, *flags: str, devices: int = 8, timeout: int = 240):
    """Run `run_training.py` in a fresh process with `devices` CPU devices."""
    argv, env = driver_command(workdir, config, *flags, devices=devices)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=REPO)


def batches_seen(workdir: Path) -> dict[int, str]:
    """step -> batch hash, the last execution of each step winning (as after a resume)."""
    out: dict[int, str] = {}
    path = workdir.parent / f"{workdir.name}.batches"
    for line in path.read_text().splitlines():
        step, digest = line.split()
        out[int(step)] = digest
    return out
