"""The CLI under bad input (issue 15): each case gives its exit code (2 usage, 1 failed run)
and a message, never a traceback; a run that fails before writing anything leaves no workdir.

Cases that fail before training cost little; the eval/predict cases share one tiny trained
workdir (module fixture of conftest.py).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket

import numpy as np
import pytest
from conftest import TINY, cli
from PIL import Image

from cnnjax.checkpoint import LOCK_FILE


def _configs(folder):
    folder.mkdir()
    (folder / "syntax.py").write_text("def get_config(:\n")
    (folder / "noget.py").write_text("import ml_collections\n")
    return folder


# (id, extra argv (TMP: a folder with bad config files), exit code, part of the message)
BEFORE_TRAINING = [
    ("config_missing", ["--config=TMP/nope.py"], 2, "no such config file"),
    ("config_is_dir", ["--config=TMP"], 2, "not a file"),
    ("config_syntax", ["--config=TMP/syntax.py"], 2, "syntax error"),
    ("config_no_get_config", ["--config=TMP/noget.py"], 2, "get_config"),
    ("config_bad_arg", [f"--config={TINY}:bogus"], 2, "bogus"),
    ("bad_mode", [f"--config={TINY}", "--mode=bogus"], 2, "mode"),
    ("export_bad_format", ["--mode=export", "--format=bogus"], 2, "bogus"),
    ("lr_overflow", [f"--config={TINY}", "--config.optimizer.learning_rate=1e39"], 1,
     "learning_rate"),
    ("lr_inf", [f"--config={TINY}", "--config.optimizer.learning_rate=inf"], 1, "learning_rate"),
    ("lr_nan", [f"--config={TINY}", "--config.optimizer.learning_rate=nan"], 1, "learning_rate"),
    ("weight_decay_nan", [f"--config={TINY}", "--config.optimizer.weight_decay=nan"], 1,
     "weight_decay"),
    ("model_option", [f"--config={TINY}", "--config.model=resnet_tiny",
                      "--config.model_options.stem=foo"], 1, "stem"),
    ("augment_spec", [f"--config={TINY}", "--config.augment=hflip(p=x)"], 1, "hflip"),
    ("best_metric_typo", [f"--config={TINY}", "--config.best_metric=acuracy"], 1, "acuracy"),
]


@pytest.mark.parametrize("case", BEFORE_TRAINING, ids=[c[0] for c in BEFORE_TRAINING])
def test_fails_before_training(case, tmp_path, capfd):
    _, argv, code, text = case
    folder = _configs(tmp_path / "cfg")
    workdir = tmp_path / "w"
    argv = [a.replace("TMP", str(folder)) for a in argv]
    got, _, err = cli(capfd, f"--workdir={workdir}", *argv)
    assert got == code, err
    assert "Traceback" not in err and text in err
    assert not (workdir / "checkpoints").exists() or not any((workdir / "checkpoints").iterdir())
    metrics = workdir / "metrics.jsonl"
    assert not metrics.exists() or not metrics.read_text().strip(), "failed before training"
    if case[0] in ("augment_spec", "lr_overflow", "config_missing", "model_option"):
        assert not workdir.exists(), "a run that wrote nothing must not leave its workdir"


def test_no_workdir_is_usage_error(capfd):
    code, _, err = cli(capfd, f"--config={TINY}")
    assert code == 2 and "--workdir" in err and "Traceback" not in err


@pytest.mark.parametrize("where", ["file", "checkpoints_file", "proc"])
def test_unusable_workdir(where, tmp_path, capfd):
    workdir = tmp_path / "w"
    if where == "file":
        workdir.write_text("x")
    elif where == "checkpoints_file":
        workdir.mkdir()
        (workdir / "checkpoints").write_text("x")
    else:
        workdir = "/proc/self/cnnjax_run"
    code, _, err = cli(capfd, f"--workdir={workdir}", f"--config={TINY}")
    assert code == 1 and "Traceback" not in err and "not writable" in err


# --------------------------------------------------------------------------- a trained workdir


def _png(path, array, mode=None):
    Image.fromarray(array, mode=mode).save(path)
    return path


def _predict_inputs(tmp_path, kind):
    folder = tmp_path / kind
    folder.mkdir()
    if kind == "corrupt_png":
        good = folder / "good.png"
        _png(good, np.zeros((16, 16, 3), np.uint8))
        (folder / "broken.png").write_bytes(good.read_bytes()[:40])
        return folder, "broken.png"
    if kind == "text_png":
        (folder / "notes.png").write_text("not an image")
        return folder, "notes.png"
    if kind == "two_channel":
        _png(folder / "la.png", np.zeros((16, 16, 2), np.uint8), mode="LA")
        return folder, "la.png"
    path = folder / "x.npy"
    if kind == "empty_npy":
        np.save(path, np.zeros((0, 16, 16, 3), np.uint8))
        return path, "no image"
    if kind == "nan_npy":
        x = np.zeros((2, 16, 16, 3), np.float32)
        x[1, 3, 3, 0] = np.nan
        np.save(path, x)
        return path, "NaN"
    if kind == "float_wrong_size":
        np.save(path, np.zeros((2, 8, 8, 1), np.float32))
        return path, "(16, 16, 3)"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["corrupt_png", "text_png", "two_channel", "empty_npy",
                                  "nan_npy", "float_wrong_size"])
def test_predict_bad_input(kind, trained, tmp_path, capfd):
    path, text = _predict_inputs(tmp_path, kind)
    code, _, err = cli(capfd, f"--workdir={trained}", "--mode=predict", f"--input={path}",
                       f"--output={tmp_path / 'out'}")
    assert code == 1 and "Traceback" not in err and text in err, err


@pytest.mark.parametrize("argv, code, text", [
    (["--mode=eval", "--checkpoint=99"], 1, "99"),
    (["--mode=eval", "--checkpoint=-3"], 2, "checkpoint"),
    (["--mode=predict"], 2, "--input"),
])
def test_eval_predict_bad_flags(argv, code, text, trained, capfd):
    got, _, err = cli(capfd, f"--workdir={trained}", *argv, "--noplots")
    assert got == code and "Traceback" not in err and text in err, err


def test_lock_held(trained_copy, capfd):
    holder = {"host": socket.gethostname(), "pid": os.getpid(), "start_time": "earlier"}
    fd = os.open(trained_copy / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held as another process would
    os.write(fd, json.dumps(holder).encode())
    before = (trained_copy / "metrics.jsonl").read_text()
    try:
        code, _, err = cli(capfd, f"--workdir={trained_copy}", f"--config={TINY}")
    finally:
        os.close(fd)
    assert code == 1 and "Traceback" not in err and f"pid {os.getpid()}" in err.lower(), err
    assert (trained_copy / "metrics.jsonl").read_text() == before


def test_corrupt_checkpoint_step(trained_copy, capfd):
    (trained_copy / "checkpoints" / "6" / "state" / "_METADATA").unlink()
    code, _, err = cli(capfd, f"--workdir={trained_copy}", "--mode=eval", "--checkpoint=6",
                       "--noplots")
    assert code == 1 and "Traceback" not in err and "corrupt" in err, err


def test_eval_unwritable_prints_metrics_first(trained_copy, capfd):
    (trained_copy / "eval_test_latest.json").mkdir()  # root ignores permissions: a folder
    code, out, err = cli(capfd, f"--workdir={trained_copy}", "--mode=eval",
                         "--checkpoint=latest", "--noplots")
    assert code == 1 and "Traceback" not in err and "printed above" in err, err
    assert json.loads(out.strip().splitlines()[-1])["step"] == 6


def test_export_mode(trained, tmp_path, capfd):
    out = tmp_path / "export"
    code, stdout, err = cli(capfd, f"--workdir={trained}", "--mode=export",
                            "--format=stablehlo", f"--output={out}")
    assert code == 0, err
    assert any(out.rglob("*")) and "wrote stablehlo" in stdout
