"""The CLI under the bad inputs of issue 23 (items 5, 8, 9, 10, 14, 16): one line naming what
and where, exit 1 (failed run) or 2 (usage), no traceback, nothing saved lost. In-process
through `experiments.classify.main`; the eval/predict cases share one tiny trained workdir."""

from __future__ import annotations

import json
import logging

import pytest
from conftest import TINY, cli

# --------------------------------------------------------------------------- item 8


def test_onednn_switch_neither_on_nor_off_is_refused(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("CNNJAX_ONEDNN", "disabled")
    workdir = tmp_path / "w"
    code, _, err = cli(capfd, f"--workdir={workdir}", f"--config={TINY}", "--noplots")
    assert code == 1 and "Traceback" not in err, err
    assert "CNNJAX_ONEDNN='disabled'" in err and "0/false/off/no" in err
    assert not workdir.exists()


def test_onednn_switch_is_recorded_and_a_change_on_resume_is_warned(trained_copy, capfd,
                                                                     monkeypatch, caplog):
    runs = json.loads((trained_copy / "run_metadata.json").read_text())["runs"]
    assert runs[-1]["cpu_kernels"]["onednn"] is True
    monkeypatch.setenv("CNNJAX_ONEDNN", "off")
    with caplog.at_level(logging.WARNING, logger="cnnjax.checkpoint"):
        code, _, err = cli(capfd, f"--workdir={trained_copy}", f"--config={TINY}", "--noplots",
                           "--config.num_train_steps=7")
    assert code == 0, err
    runs = json.loads((trained_copy / "run_metadata.json").read_text())["runs"]
    assert runs[-1]["cpu_kernels"] == {"CNNJAX_ONEDNN": "off", "onednn": False}
    warned = [r.getMessage() for r in caplog.records if "oneDNN convolutions are off" in
              r.getMessage()]
    assert len(warned) == 1 and "will not match" in warned[0], caplog.text


# --------------------------------------------------------------------------- item 10


@pytest.mark.parametrize("seed", [str(2**63), str(2**64 + 5)])
def test_seed_that_does_not_fit_is_refused_before_any_work(tmp_path, capfd, seed):
    """It gave two tracebacks and left an empty workdir."""
    workdir = tmp_path / "w"
    code, _, err = cli(capfd, f"--workdir={workdir}", f"--config={TINY}", "--noplots",
                       f"--config.seed={seed}")
    assert code in (1, 2) and "Traceback" not in err, err
    assert "seed" in err and seed in err and len(err.strip().splitlines()) == 1, err
    assert not workdir.exists()


def test_sweep_seeds_must_fit(tmp_path, capsys):
    from experiments import sweep

    code = sweep.main(["sweep", f"--workdir={tmp_path}", f"--config={TINY}",
                       f"--seeds=0,{2**63}", "--dry-run"])
    assert code == 2 and "0..2**63-1" in capsys.readouterr().err


# --------------------------------------------------------------------------- item 6


@pytest.mark.parametrize("name, data", [("w.pth", b""), ("w.safetensors", b"\x00junk" * 9)])
def test_damaged_init_from_file_is_one_line_naming_it(tmp_path, capfd, name, data):
    weights = tmp_path / name
    weights.write_bytes(data)
    workdir = tmp_path / "w"
    code, _, err = cli(capfd, f"--workdir={workdir}", f"--config={TINY}", "--noplots",
                       f"--config.init_from={weights}")
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert str(weights) in err
    assert not workdir.exists() or not any(p.is_file() for p in workdir.rglob("*"))


# --------------------------------------------------------------------------- item 9


@pytest.mark.parametrize("mode", ["eval", "predict"])
def test_eval_predict_without_config_json_is_refused(trained_copy, tmp_path, capfd, mode):
    """It fell back to the default config (another model: a 91-line mismatch)."""
    (trained_copy / "config.json").unlink()
    extra = [f"--input={tmp_path / 'x.npy'}"] if mode == "predict" else []
    code, _, err = cli(capfd, f"--workdir={trained_copy}", f"--mode={mode}", "--noplots",
                       *extra)
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"{trained_copy / 'config.json'} not found" in err and "--config=FILE" in err


@pytest.mark.parametrize("content, text", [
    (b'{"model": "simple_cnn",', "is not valid JSON (Expecting"),
    (b"\xff\xfe{}", "is not UTF-8 text"),
    (b"[1, 2]", "holds a JSON list, not a config object"),
])
def test_garbage_config_json_names_the_file(trained_copy, capfd, content, text):
    (trained_copy / "config.json").write_bytes(content)
    code, _, err = cli(capfd, f"--workdir={trained_copy}", "--mode=eval", "--noplots")
    assert code == 1 and "Traceback" not in err, err
    assert str(trained_copy / "config.json") in err and text in err
