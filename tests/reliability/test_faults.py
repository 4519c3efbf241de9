"""Fault injection on the trainer (issue 15): divergence, corrupt checkpoints, failed resumes,
signals. In-process through the CLI's `main` (exit codes and messages as the user sees them).
"""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
from conftest import TINY, cli
from PIL import Image

from cnnjax.checkpoint import CheckpointManager, nonfinite_paths
from cnnjax.train.runner import config as config_lib
from cnnjax.train.runner.components import build
from cnnjax.train.runner.evaluation import load_config
from cnnjax.train.runner.loop import _Preemption
from cnnjax.train.runner.predict_io import _read_image, csv_safe, mask_name
from cnnjax.train.runner.workdir_history import PREVIOUS_RUNS, move_history_aside
from experiments import common


def _state_like(workdir):
    return build(load_config(workdir)).init_state()


def _rows(workdir):
    return (workdir / "metrics.jsonl").read_text().splitlines()


def test_all_checkpoints_corrupt_refuses_then_fresh_start_keeps_history(trained_copy, capfd):
    rows = _rows(trained_copy)
    for step in ("3", "6"):
        (trained_copy / "checkpoints" / step / "state" / "_METADATA").unlink()
    for attempt in range(2):  # the first moves them aside; the same command again still refuses
        code, _, err = cli(capfd, f"--workdir={trained_copy}", f"--config={TINY}", "--noplots")
        assert code == 1 and "Traceback" not in err and "fresh_start" in err, (attempt, err)
        assert _rows(trained_copy) == rows, "the refused run must not touch metrics.jsonl"
    code, out, err = cli(capfd, f"--workdir={trained_copy}", f"--config={TINY}", "--noplots",
                         "--config.fresh_start=True")
    assert code == 0, err
    assert "fresh start" in out + err
    (previous,) = (trained_copy / PREVIOUS_RUNS).iterdir()
    assert (previous / "metrics.jsonl").read_text().splitlines() == rows
    moved = sorted(p.name.split("-")[0] for p in (previous / "corrupt_checkpoints").iterdir())
    assert moved == ["3", "6"]
    assert json.loads(_rows(trained_copy)[0])["step"] >= 1 and len(_rows(trained_copy)) == len(rows)


def test_failed_resume_keeps_config_json(trained_copy, capfd):
    before = (trained_copy / "config.json").read_text()
    code, _, err = cli(capfd, f"--workdir={trained_copy}", f"--config={TINY}", "--noplots",
                       "--config.model_options.widths=(8, 16, 32)")
    assert code == 1 and "Traceback" not in err, err
    assert (trained_copy / "config.json").read_text() == before
    code, _, err = cli(capfd, f"--workdir={trained_copy}", "--mode=eval", "--noplots")
    assert code == 0, err


def test_issue_divergence_command_is_rejected(tmp_path, capfd):
    """The issue's command (sgd, lr 1e39, checkpoint every step, no periodic eval): rejected
    at validation (1e39 is Inf in float32) and leaves nothing behind."""
    workdir = tmp_path / "w"
    code, _, err = cli(capfd, *_divergence_argv(workdir), "--config.optimizer.learning_rate=1e39")
    assert code == 1 and "Traceback" not in err and "learning_rate" in err, err
    assert not workdir.exists()


def _divergence_argv(workdir):
    return [f"--workdir={workdir}", f"--config={TINY}", "--noplots",
            "--config.optimizer.name=sgd", "--config.checkpoint_every_steps=1",
            "--config.eval_every_steps=0"]


@pytest.mark.slow
def test_divergence_never_saved_then_resume_with_smaller_lr(tmp_path, capfd, monkeypatch):
    """Past validation (patched), lr 1e39 makes the state Inf at step 1: the run stops with
    'diverged', saves nothing non-finite, and the same workdir then trains to the end at
    lr 0.01."""
    workdir = tmp_path / "w"
    monkeypatch.setattr(config_lib, "_FLOAT32_MAX", float("inf"))
    code, _, err = cli(capfd, *_divergence_argv(workdir), "--config.optimizer.learning_rate=1e39")
    monkeypatch.undo()
    assert code == 1 and "Traceback" not in err and "diverged" in err, err
    with CheckpointManager(workdir / "checkpoints", read_only=True) as m:
        assert m.all_steps() == []
    code, _, err = cli(capfd, *_divergence_argv(workdir), "--config.optimizer.learning_rate=0.01")
    assert code == 0, err
    with CheckpointManager(workdir / "checkpoints", read_only=True) as m:
        assert m.latest_step() == 6
        assert nonfinite_paths(m.restore(_state_like(workdir), 6).state) == []


def test_learning_rate_validation():
    for bad in (1e39, float("inf"), float("nan"), -1.0):
        with pytest.raises(ValueError, match="learning_rate"):
            config_lib.prepare_config({"optimizer": {"learning_rate": bad}})
    config_lib.prepare_config({"optimizer": {"learning_rate": 3e38}})


def test_sigint_is_a_preemption_not_a_traceback():
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN in a pytest-xdist worker
    with _Preemption() as p:
        os.kill(os.getpid(), signal.SIGINT)
    assert p.signum == signal.SIGINT
    assert signal.getsignal(signal.SIGINT) is before  # the handler it found, restored


def test_preempted_run_exits_128_plus_signal(monkeypatch, tmp_path, capfd):
    monkeypatch.setattr(common, "train", lambda c, w, **kw: {"status": "preempted",
                                                       "signal": signal.SIGTERM})
    code, _, _ = cli(capfd, f"--workdir={tmp_path / 'w'}", f"--config={TINY}")
    assert code == 143


def test_move_history_aside(tmp_path):
    (tmp_path / "checkpoints" / "5").mkdir(parents=True)
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n')
    (tmp_path / "config.json").write_text("{}")
    dest = move_history_aside(tmp_path)
    assert (dest / "metrics.jsonl").exists() and (dest / "checkpoints" / "5").is_dir()
    assert (tmp_path / "checkpoints").is_dir() and not any((tmp_path / "checkpoints").iterdir())
    assert (tmp_path / "config.json").exists() and not (tmp_path / "metrics.jsonl").exists()


def test_sixteen_bit_png_is_scaled(tmp_path):
    x = np.array([[0, 257, 32896, 65535]], np.uint16)  # 257 * (0, 1, 128, 255)
    Image.fromarray(x).save(tmp_path / "a.png")
    np.testing.assert_array_equal(_read_image(tmp_path / "a.png"), [[0, 1, 128, 255]])


def test_mask_names_unique_and_csv_safe():
    taken: set[str] = set()
    for name in ("a.png", "a.jpg", "x.png", "x.PNG", "0"):
        taken.add(mask_name(name, taken).lower())
    assert len(taken) == 5 and "0_mask.png" in taken and "a_png_mask.png" in taken
    assert [csv_safe(s) for s in ("=1+1", "+x", "-x", "@x", "ok", "")] == [
        "'=1+1", "'+x", "'-x", "'@x", "ok", ""]


