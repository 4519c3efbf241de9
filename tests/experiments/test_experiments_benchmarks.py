"""The configs' published results, as slow tests (`pytest -m slow tests/experiments`).

Each runs the config's own command line in a subprocess on one CPU device (as a user would)
and checks the figure its docstring states. They need the real data sets (skipped without).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, config: str, workdir: Path, data_dir: Path | None) -> tuple[dict, float]:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one device, as users run
    cmd = [sys.executable, "-m", f"experiments.{script}", f"--workdir={workdir}",
           f"--config=experiments/configs/{config}.py"]
    if data_dir is not None:
        cmd.append(f"--config.data_dir={data_dir}")
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, timeout=3600)
    return json.loads((workdir / "summary.json").read_text()), time.perf_counter() - start


@pytest.mark.slow
def test_mnist_simple_cnn_reaches_99_percent_within_10_minutes(data_dir: Path, tmp_path: Path):
    summary, seconds = _run("classify", "mnist", tmp_path / "mnist", data_dir)
    assert summary["test"]["accuracy"] >= 0.990, summary["test"]
    assert seconds < 600, f"{seconds:.0f} s"
    assert (tmp_path / "mnist" / "confusion_matrix_test.png").exists()


@pytest.mark.slow
def test_isbi2012_unet_segments_membranes(data_dir: Path, tmp_path: Path):
    summary, _ = _run("segment", "isbi2012_unet", tmp_path / "isbi", data_dir)
    val = summary["val"]
    assert val["pixel_accuracy"] >= 0.90 and val["mean_iou"] >= 0.75, val


@pytest.mark.slow
def test_default_shapes_runs_are_clearly_learned(tmp_path: Path):
    summary, _ = _run("classify", "shapes", tmp_path / "shapes", None)
    assert summary["test"]["accuracy"] >= 0.85, summary["test"]
    summary, _ = _run("segment", "shapes_seg", tmp_path / "shapes_seg", None)
    assert summary["test"]["mean_iou"] >= 0.70, summary["test"]


@pytest.mark.slow
def test_two_process_cpu_run_matches_one_process(tmp_path: Path):
    """The multi-host launch (2 processes x 4 CPU devices, gloo) gives the test accuracy of
    one process on 8 devices."""
    base = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env = {**base, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    tiny = "--config=experiments/configs/tiny.py"
    procs = [
        subprocess.Popen([sys.executable, "-m", "experiments.classify",
                          f"--workdir={tmp_path / 'two'}", tiny, "--noplots",
                          "--coordinator_address=localhost:12391", "--num_processes=2",
                          f"--process_id={i}"], cwd=ROOT, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for i in range(2)
    ]
    assert [p.wait(timeout=600) for p in procs] == [0, 0]
    single = {**base, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    subprocess.run([sys.executable, "-m", "experiments.classify",
                    f"--workdir={tmp_path / 'one'}", tiny, "--noplots"], cwd=ROOT, env=single,
                   check=True, timeout=600, capture_output=True)
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    one = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert two["test"]["accuracy"] == pytest.approx(one["test"]["accuracy"], abs=1e-6)
    assert two["test"]["loss"] == pytest.approx(one["test"]["loss"], rel=1e-4)
