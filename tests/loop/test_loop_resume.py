"""Exact resume: SIGKILL / SIGTERM / corrupt checkpoints give the uninterrupted run's results."""

from __future__ import annotations

import json
import shutil

import numpy as np
from loop_helpers import TOTAL_STEPS, batches_seen, run_driver, tiny_config

from cnnjax.train.runner.reporting import TIMING_FIELDS, read_metrics


def final_checkpoint(workdir, step=TOTAL_STEPS):
    """The raw arrays of checkpoint `step` (restored without a target: exactly as stored)."""
    import orbax.checkpoint as ocp

    with ocp.CheckpointManager(workdir / "checkpoints") as m:
        return m.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(), data=ocp.args.JsonRestore()))


def assert_same_state(a, b):
    import jax

    la, lb = jax.tree_util.tree_flatten_with_path(a)[0], jax.tree_util.tree_flatten_with_path(b)[0]
    assert [p for p, _ in la] == [p for p, _ in lb]
    for (path, x), (_, y) in zip(la, lb, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape, path
        # bitwise: compare the bytes, not the values (NaN-safe, -0.0 vs 0.0 distinct)
        assert x.tobytes() == y.tobytes(), f"{jax.tree_util.keystr(path)} differs"


def metric_rows(workdir):
    return [{k: v for k, v in row.items() if k not in TIMING_FIELDS}
            for row in read_metrics(workdir)]


def test_reference_run_outputs(reference_run):
    workdir, summary = reference_run
    assert summary["status"] == "completed" and summary["step"] == TOTAL_STEPS
    rows = read_metrics(workdir)
    train = [r for r in rows if r["split"] == "train"]
    assert [r["step"] for r in train] == list(range(2, TOTAL_STEPS + 1, 2))
    assert {"loss", "accuracy", "learning_rate", "images_per_s", "epoch"} <= set(train[0])
    assert train[0]["epoch"] == 2 / 4  # 64 examples / batch 16 = 4 steps per epoch
    val_steps = [r["step"] for r in rows if r["split"] == "val"]
    assert val_steps == [3, 6, 9, 12]
    assert [r["step"] for r in rows if r["split"] == "test"] == [TOTAL_STEPS]
    assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
    config = json.loads((workdir / "config.json").read_text())
    assert config["seed"] == 3 and config["num_train_steps"] == TOTAL_STEPS
    run = json.loads((workdir / "run_metadata.json").read_text())["runs"][0]
    assert {"git", "versions", "devices", "command_line", "seed", "determinism"} <= set(run)
    assert len(run["devices"]) == 8
    assert {"python", "jax", "jaxlib", "flax", "optax", "orbax", "grain", "numpy"} <= set(
        run["versions"])
    assert json.loads((workdir / "summary.json").read_text())["step"] == TOTAL_STEPS


def test_best_k_retention_keeps_the_right_steps(reference_run):
    workdir, summary = reference_run
    val = {r["step"]: r["accuracy"] for r in read_metrics(workdir) if r["split"] == "val"}
    steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    # independent reference: the 2 latest checkpoints (every 3 steps) + the 2 best by accuracy
    # (ties: the later step), among the checkpointed validation steps
    latest = {9, 12}
    best = sorted(val, key=lambda s: (-val[s], -s))[:2]
    assert steps == sorted(latest | set(best))
    assert summary["best_step"] == best[0]


def test_sigkill_then_sigterm_then_resume_is_bitwise_identical(reference_run, tmp_path):
    ref_dir, ref_summary = reference_run
    workdir = tmp_path / "run"
    config = tiny_config()

    # 1. killed hard at step 8, metrics.jsonl has lines to step 8; the last checkpoint on disk
    #    is 6, or 3 if the asynchronous write of 6 had not finished
    proc = run_driver(workdir, config, "--sigkill-at-step", "8")
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert max(r["step"] for r in read_metrics(workdir)) == 8
    finished = max(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert finished in (3, 6)

    # 2. same command: resumes, and is preempted (SIGTERM) at step 10 (not a multiple of 3)
    proc = run_driver(workdir, config, "--sigterm-at-step", "10")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resumed from checkpoint step {finished} " in proc.stdout
    assert "preempted (SIGTERM): saved a checkpoint at step 10" in proc.stdout
    assert json.loads(proc.stdout.strip().splitlines()[-1])["status"] == "preempted"
    assert 10 in [int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()]

    # 3. same command again: finishes
    proc = run_driver(workdir, config)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from checkpoint step 10" in proc.stdout
    summary = json.loads(proc.stdout.strip().splitlines()[-1])

    assert summary["val"] == ref_summary["val"] and summary["test"] == ref_summary["test"]
    assert metric_rows(workdir) == metric_rows(ref_dir)
    assert batches_seen(workdir) == batches_seen(ref_dir)  # same data order
    ours, ref = final_checkpoint(workdir), final_checkpoint(ref_dir)
    assert_same_state(ours["state"], ref["state"])  # params, batch stats, optimizer, rng, step
    assert ours["data"] == ref["data"]  # data iterator position


def test_sigkill_right_after_a_checkpoint(reference_run, tmp_path):
    ref_dir, _ = reference_run
    workdir = tmp_path / "run"
    proc = run_driver(workdir, tiny_config(), "--sigkill-after-checkpoint", "3")
    assert proc.returncode == -9
    proc = run_driver(workdir, tiny_config())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from checkpoint step 3" in proc.stdout
    assert metric_rows(workdir) == metric_rows(ref_dir)
    assert batches_seen(workdir) == batches_seen(ref_dir)
    assert_same_state(final_checkpoint(workdir)["state"], final_checkpoint(ref_dir)["state"])


def test_corrupt_latest_checkpoint_falls_back_and_still_matches(reference_run, tmp_path):
    ref_dir, ref_summary = reference_run
    workdir = tmp_path / "run"
    shutil.copytree(ref_dir, workdir)
    shutil.copy(ref_dir.parent / "run.batches", tmp_path / "run.batches")
    # The final checkpoint 12 is corrupt and the run "not finished": resume must fall back to 9.
    (workdir / "summary.json").unlink()
    for f in (workdir / "checkpoints" / "12" / "state").rglob("*"):
        if f.is_file() and f.parent.name == "d":
            f.write_bytes(f.read_bytes()[:7])  # truncated
    proc = run_driver(workdir, tiny_config())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "checkpoint step 12" in proc.stderr and "corrupt" in proc.stderr
    assert "resumed from checkpoint step 9 " in proc.stdout
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["test"] == ref_summary["test"]
    assert metric_rows(workdir) == metric_rows(ref_dir)
    assert_same_state(final_checkpoint(workdir)["state"], final_checkpoint(ref_dir)["state"])
    assert [p.name[:3] for p in (workdir / "corrupt_checkpoints").iterdir()] == ["12-"]


def test_nan_mid_window_saves_the_state_before_it_and_resumes_exactly(reference_run, tmp_path):
    """A non-finite step between two checks (step 5; checks at 4 and 6) is found at the next
    check: the error names step 5, checkpoint 4 is the state after step 4 with the data
    positioned before batch 5, and the same command (the data fixed) ends as the
    uninterrupted run, bitwise."""
    ref_dir, ref_summary = reference_run
    workdir = tmp_path / "run"
    proc = run_driver(workdir, tiny_config(), "--nan-at-step", "5")
    assert proc.returncode != 0
    assert "non-finite loss or gradients at step 5 " in proc.stderr, proc.stderr[-3000:]
    assert "last good state (step 4) is saved" in proc.stderr
    assert max(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == 4
    assert max(r["step"] for r in read_metrics(workdir)) == 4  # nothing logged past step 4

    proc = run_driver(workdir, tiny_config())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from checkpoint step 4 " in proc.stdout
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["val"] == ref_summary["val"] and summary["test"] == ref_summary["test"]
    assert metric_rows(workdir) == metric_rows(ref_dir)
    assert batches_seen(workdir) == batches_seen(ref_dir)
    assert_same_state(final_checkpoint(workdir)["state"], final_checkpoint(ref_dir)["state"])
