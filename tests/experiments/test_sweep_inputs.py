"""`experiments.sweep` on awkward inputs (issue 23 items 11 and 15): a --workdir that is a
file, run names over 255 bytes, and `--report` over a summary.json with null metrics."""

from __future__ import annotations

import json
from pathlib import Path

from experiments import sweep
from experiments.sweep import plan, results

TINY = str(Path(__file__).resolve().parents[2] / "experiments" / "configs" / "tiny.py")


def test_workdir_that_is_a_file_is_a_usage_error_even_in_dry_run(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("mine")
    for workdir in (target, target / "sub"):
        for extra in ([], ["--dry-run"]):
            code = sweep.main(["sweep", f"--workdir={workdir}", f"--config={TINY}", *extra])
            err = capsys.readouterr().err
            assert code == 2 and "Traceback" not in err and str(target) in err, err
    assert target.read_text() == "mine"


def test_long_grid_values_give_names_that_fit_and_stay_unique():
    long_a, long_b = "x" * 300, "x" * 299 + "y"
    a = plan.run_name({"augment": long_a}, 0)
    b = plan.run_name({"augment": long_b}, 0)
    assert len(a.encode()) <= 255 and len(b.encode()) <= 255
    assert a != b and a == plan.run_name({"augment": long_a}, 0)  # unique and stable
    assert a.endswith(",seed=0") and a.startswith("augment=xxx")
    assert plan.run_name({"augment": "hflip"}, 1) == "augment=hflip,seed=1"  # short: as before


def _run(path: Path, summary: dict) -> None:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"seed": 0, "num_train_steps": 4}))
    (path / "metrics.jsonl").write_text(
        json.dumps({"step": 4, "split": "val", "accuracy": None, "loss": 0.5}) + "\n")
    (path / "summary.json").write_text(json.dumps(summary))


def test_report_with_null_metrics(tmp_path, capsys):
    """`sweep --report` crashed with a TypeError on a null metric in summary.json."""
    _run(tmp_path / "seed=0", {"status": "completed", "step": None,
                               "val": {"accuracy": None, "loss": 0.5}, "test": None})
    _run(tmp_path / "seed=1", {"status": "completed", "step": 4,
                               "val": {"accuracy": 0.75, "loss": 0.25}})
    (tmp_path / "seed=1" / results.RUN_RECORD).write_text(json.dumps(
        {"attempts": [{"returncode": 0, "wall_s": None}]}))
    code = sweep.main(["sweep", "--report", str(tmp_path), "--noplots"])
    _, err = capsys.readouterr()
    assert code == 0 and "Traceback" not in err, err
    run = results.read_run(tmp_path / "seed=0")
    assert run.metrics == {"val_loss": 0.5} and run.step is None
    assert results.read_run(tmp_path / "seed=1").metrics["val_accuracy"] == 0.75
