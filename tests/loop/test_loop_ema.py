"""Exact resume with an EMA of the weights (`config.ema_decay`): a run killed after a
checkpoint and resumed ends bitwise identical to an uninterrupted one, EMA included."""

from __future__ import annotations

import json

import numpy as np
from loop_helpers import batches_seen, run_driver, tiny_config
from test_loop_resume import assert_same_state, final_checkpoint, metric_rows


def test_sigkill_and_resume_with_ema_is_bitwise_identical(tmp_path):
    config = tiny_config(ema_decay=0.9)
    ref_dir = tmp_path / "reference"
    proc = run_driver(ref_dir, config)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref_summary = json.loads(proc.stdout.strip().splitlines()[-1])

    workdir = tmp_path / "run"
    proc = run_driver(workdir, config, "--sigkill-after-checkpoint", "6")
    assert proc.returncode == -9, proc.stderr[-2000:]
    proc = run_driver(workdir, config)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from checkpoint step 6" in proc.stdout
    summary = json.loads(proc.stdout.strip().splitlines()[-1])

    assert summary["val"] == ref_summary["val"] and summary["test"] == ref_summary["test"]
    assert metric_rows(workdir) == metric_rows(ref_dir)
    assert batches_seen(workdir) == batches_seen(ref_dir)
    ours, ref = final_checkpoint(workdir)["state"], final_checkpoint(ref_dir)["state"]
    assert_same_state(ours, ref)
    assert set(ours["ema"]) == {"params", "model_state"}
    ema, params = ours["ema"]["params"]["head"], ours["params"]["head"]  # the EMA lags
    assert not np.array_equal(np.asarray(ema["kernel"]), np.asarray(params["kernel"]))
