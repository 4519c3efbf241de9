"""The CLI under the bad inputs of issue 23 (items 5, 8, 9, 10, 14, 16): one line naming what
and where, exit 1 (failed run) or 2 (usage), no traceback, nothing saved lost. In-process
through `experiments.classify.main`; the eval/predict cases share one tiny trained workdir."""

from __future__ import annotations

import json
import logging

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
