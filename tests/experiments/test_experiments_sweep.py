"""`python -m experiments.sweep` and `experiments.sweep.results` on the tiny config.

One sweep (2 learning rates x 2 seeds, 2 jobs) is run once per module; the tests check its
tables against values recomputed here from the runs' own metrics.jsonl / summary.json, that a
run equals its direct command bitwise, restart (skip finished, resume unfinished, add runs),
a failing run, --dry-run and --report. Runs use one CPU device, as users run.
"""

from __future__ import annotations

import csv
import importlib
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments import sweep
from experiments.sweep import local, plan, results

ROOT = Path(__file__).resolve().parents[2]
TINY = "experiments/configs/tiny.py"
LRS = ("0.01", "0.003")
GRID = f"--grid=optimizer.learning_rate={','.join(LRS)}"
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 9: 2.262, 30: 2.042}  # t tables, 3 decimals


def _sweep(*args: str) -> int:
    return sweep.main(["sweep", f"--config={TINY}", "--noplots", *args])


def _rows(path: Path) -> list[dict]:
    """metrics.jsonl without its one timing field (images_per_s)."""
    rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "images_per_s"} for r in rows]


def _csv(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def _tree(path: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(path)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def one_device():
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("XLA_FLAGS", raising=False)  # the subprocess runs get 1 CPU device
        mp.chdir(ROOT)
        yield


@pytest.fixture(scope="module")
def swept(tmp_path_factory, one_device) -> Path:
    directory = tmp_path_factory.mktemp("sweep")
    assert _sweep(f"--workdir={directory}", "--seeds=0,1", GRID, "--jobs=2") == 0
    return directory


def _name(lr: str, seed: int) -> str:
    return f"optimizer.learning_rate={lr},seed={seed}"


# --------------------------------------------------------------------------- tables


def test_results_rows_are_the_runs_own_metrics(swept: Path):
    rows = {r["run"]: r for r in _csv(swept / "results.csv")}
    assert sorted(rows) == sorted(_name(lr, s) for lr in LRS for s in (0, 1))
    for name, row in rows.items():
        metrics = _rows(swept / name)
        summary = json.loads((swept / name / "summary.json").read_text())
        assert row["status"] == "completed" and row["step"] == row["total_steps"] == "6"
        assert float(row["optimizer.learning_rate"]) == float(name.split("=")[1].split(",")[0])
        assert row["seed"] == name[-1] and float(row["wall_s"]) > 0
        test = [r for r in metrics if r["split"] == "test"][-1]
        val = [r for r in metrics if r["split"] == "val"]
        best = [r for r in val if r["step"] == summary["best_step"]][-1]
        for metric in ("accuracy", "loss", "top5_accuracy"):
            assert float(row[f"test_{metric}"]) == test[metric]
            assert float(row[f"val_{metric}"]) == val[-1][metric]
            assert float(row[f"best_val_{metric}"]) == best[metric]


def test_summary_mean_std_and_t_interval(swept: Path):
    summary = {float(r["optimizer.learning_rate"]): r for r in _csv(swept / "summary.csv")}
    assert sorted(summary) == sorted(float(lr) for lr in LRS)
    for lr in LRS:
        row = summary[float(lr)]
        assert row["n"] == row["runs"] == "2"
        for metric in ("accuracy", "loss"):
            x = [[r for r in _rows(swept / _name(lr, s)) if r["split"] == "test"][-1][metric]
                 for s in (0, 1)]
            mean, std = (x[0] + x[1]) / 2, abs(x[0] - x[1]) / math.sqrt(2)  # n=2 by hand
            half = T_975[1] * std / math.sqrt(2)
            assert float(row[f"test_{metric}_mean"]) == pytest.approx(mean, rel=1e-12)
            assert float(row[f"test_{metric}_std"]) == pytest.approx(std, rel=1e-9, abs=1e-15)
            assert float(row[f"test_{metric}_ci_lo"]) == pytest.approx(mean - half, rel=1e-4)
            assert float(row[f"test_{metric}_ci_hi"]) == pytest.approx(mean + half, rel=1e-4)
    text = (swept / "summary.md").read_text()
    assert "| optimizer.learning_rate | n |" in text and text.count("\n| 0.0") == 2


def test_a_sweep_run_is_its_direct_command_bitwise(swept: Path, tmp_path: Path):
    """The command --dry-run prints for one run, rerun by hand in another workdir."""
    run = swept / _name("0.01", 1)
    log = (run / local.LOG_FILE).read_text().splitlines()[0]
    command = [a.replace(f"--workdir={run}", f"--workdir={tmp_path}") for a in
               shlex.split(log.removeprefix("$ "))]
    assert command[1:3] == ["-m", "experiments.classify"] and "--config.seed=1" in command
    subprocess.run(command, check=True, capture_output=True, timeout=900)
    assert _rows(tmp_path) == _rows(run)
    assert json.loads((tmp_path / "config.json").read_text()) == json.loads(
        (run / "config.json").read_text())


# --------------------------------------------------------------------------- restart


def test_restart_skips_finished_resumes_unfinished_and_reports_failures(swept: Path,
                                                                        tmp_path: Path,
                                                                        capsys):
    directory = tmp_path / "sweep"
    shutil.copytree(swept, directory)
    finished = _name("0.01", 1)
    cut = directory / _name("0.003", 1)  # as if killed after the checkpoint of step 3
    full = _rows(cut)
    (cut / "summary.json").unlink()
    shutil.rmtree(cut / "checkpoints" / "6")
    lines = (cut / "metrics.jsonl").read_text().splitlines(keepends=True)
    (cut / "metrics.jsonl").write_text("".join(
        line for line in lines if json.loads(line)["step"] <= 3))
    before = _tree(directory / finished)
    # A grid with one more value (1e30 overflows: the trainer stops with exit 1).
    code = _sweep(f"--workdir={directory}", "--seeds=1",
                  "--grid=optimizer.learning_rate=0.01,0.003,1e30", "--jobs=2")
    out, err = capsys.readouterr()
    assert code == 1
    assert "3 runs" in out and "1 finished" in out and "2 to run" in out
    assert _tree(directory / finished) == before  # not touched, not even its mtimes
    assert _rows(cut) == full  # resumed exactly
    assert "resumed from checkpoint step 3" in (cut / local.LOG_FILE).read_text()
    bad = _name("1e+30", 1)
    assert f"FAILED {bad} (exit 1" in out and f"FAILED {bad}" in err
    assert "non-finite" in err
    rows = {r["run"]: r for r in _csv(directory / "results.csv")}
    assert len(rows) == 5 and rows[bad]["status"] == "failed" and "non-finite" in rows[bad][
        "error"]
    assert json.loads((directory / bad / results.RUN_RECORD).read_text())["attempts"][0][
        "returncode"] == 1


def test_dry_run_lists_runs_and_runs_nothing(swept: Path, tmp_path: Path, capsys):
    assert _sweep(f"--workdir={swept}", "--seeds=0,1,2", GRID, "--dry-run") == 0
    out = capsys.readouterr().out
    assert "6 runs: 4 finished, 2 to run" in out
    for lr in LRS:
        assert f"new      {swept / _name(lr, 2)}" in out
        assert f"finished {swept / _name(lr, 0)}" in out
    assert not (swept / _name(LRS[0], 2)).exists()
    assert _sweep(f"--workdir={tmp_path / 'none'}", "--dry-run") == 0
    assert "1 runs: 0 finished, 1 to run" in capsys.readouterr().out
    assert not (tmp_path / "none").exists()


# --------------------------------------------------------------------------- report


def test_report_rebuilds_tables_from_workdirs(swept: Path, tmp_path: Path, capsys):
    out = tmp_path / "report"
    dirs = [str(swept / _name(lr, s)) for lr in LRS for s in (0, 1)]
    assert sweep.main(["sweep", "--report", *dirs, f"--workdir={out}"]) == 0
    assert "| optimizer.learning_rate | n |" in capsys.readouterr().out
    strip = [{k: v for k, v in r.items() if k != "wall_s"} for r in _csv(out / "results.csv")]
    again = [{k: v for k, v in r.items() if k != "wall_s"} for r in _csv(swept / "results.csv")]
    assert sorted(strip, key=str) == sorted(again, key=str)
    assert (out / "summary.csv").read_text() == (swept / "summary.csv").read_text()
    plots = {p.name for p in (out / "plots").iterdir()}
    assert {"test_accuracy_vs_optimizer.learning_rate.png", "curves_train.png",
            "curves_val.png"} <= plots


def test_report_needs_a_target_for_single_runs(swept: Path, capsys):
    assert sweep.main(["sweep", "--report", str(swept / _name("0.01", 0))]) == 2
    assert "needs --workdir" in capsys.readouterr().err


# --------------------------------------------------------------------------- usage


@pytest.mark.parametrize(("args", "message"), [
    (["--bogus"], "Unknown command line flag 'bogus'"),
    ([f"--config={TINY}"], "--workdir=DIR and --config=FILE are required"),
    (["--workdir=w", f"--config={TINY}", "--seeds=0,x"], "--seeds='0,x'"),
    (["--workdir=w", f"--config={TINY}", "--grid=optimizer.learning_rate"], "FIELD=V1,V2"),
    (["--workdir=w", f"--config={TINY}", "--grid=nope=1,2"], "unknown config field 'nope'"),
    (["--workdir=w", f"--config={TINY}", "--grid=seed=1,2"], "use --seeds"),
    (["--workdir=w", f"--config={TINY}", "--grid=batch_size=8,8"], "repeats a value"),
    (["--workdir=w", f"--config={TINY}", "--grid=batch_size=8,08"], "give the same settings"),
    (["--workdir=w", f"--config={TINY}", "--jobs=0"], "jobs"),
    (["--workdir=w", f"--config={TINY}", "--config.seed=3", "--seeds=1"], "--seeds only"),
])
def test_usage_errors_exit_2(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert sweep.main(["sweep", *args]) == 2
    err = capsys.readouterr().err
    assert "usage error" in err and message in err, err


def test_usage_error_has_no_traceback():
    result = subprocess.run([sys.executable, "-m", "experiments.sweep", "--jobs=two"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "usage error" in result.stderr and "jobs" in result.stderr


def test_grid_values_and_names():
    assert plan.split_values("1,(8, 16),'a,b', x") == ["1", "(8, 16)", "'a,b'", "x"]
    assert plan.parse_grid(["config.a.b=1,2"]) == {"a.b": ["1", "2"]}
    assert plan.run_name({"lr": 0.001, "widths": (8, 16), "m": "a/b c"}, 3) == (
        "lr=0.001,widths=8-16,m=a_b_c,seed=3")
    assert local.cpu_slots(1) == [sorted(os.sched_getaffinity(0))]
    cpus = sorted(os.sched_getaffinity(0))
    slots = local.cpu_slots(2 * len(cpus))
    assert len(slots) == 2 * len(cpus) and all(len(s) == 1 for s in slots)


# --------------------------------------------------------------------------- statistics


@pytest.mark.parametrize(("df", "value"), sorted(T_975.items()))
def test_t_quantile_matches_tables(df, value):
    assert round(results.t_quantile(0.975, df), 3) == value
    assert results.t_quantile(0.025, df) == pytest.approx(-value, abs=5e-4)


def test_mean_ci_known_values():
    s = results.mean_ci([1.0, 2.0, 3.0])  # mean 2, std 1, half-width 4.303 / sqrt(3)
    assert (s["n"], s["mean"], s["std"]) == (3, 2.0, 1.0)
    assert s["ci_hi"] - 2.0 == pytest.approx(4.303 / math.sqrt(3), abs=1e-3)
    assert s["ci_lo"] == pytest.approx(4.0 - s["ci_hi"])
    x = np.random.default_rng(0).normal(size=10)
    s = results.mean_ci(list(x), confidence=0.9)  # 90%: t(0.95, 9) = 1.833
    assert s["ci_hi"] - s["mean"] == pytest.approx(1.833 * x.std(ddof=1) / math.sqrt(10),
                                                   rel=1e-3)
    one = results.mean_ci([0.5, math.nan])
    assert one["n"] == 1 and one["mean"] == 0.5 and math.isnan(one["std"])
    with pytest.raises(ValueError, match=r"confidence=1\.5"):
        results.mean_ci([1.0, 2.0], confidence=1.5)
    with pytest.raises(ValueError, match="df=0"):
        results.t_quantile(0.975, 0)


# --------------------------------------------------------------------------- stated results

STATED = ("tiny", "shapes_seg", "signals_cnn1d", "mnist")  # the configs cheap enough to rerun


@pytest.mark.parametrize("name", STATED)
def test_configs_state_their_result(name):
    expected = importlib.import_module(f"experiments.configs.{name}").EXPECTED
    assert set(expected) == {"metric", "split", "value", "tolerance"}, expected
    assert expected["split"] in ("val", "test") and 0 < expected["tolerance"] < 1


@pytest.mark.slow
@pytest.mark.parametrize("name", STATED)
def test_stated_result_still_holds(name, tmp_path, request):
    """The config's own command (its seed, one CPU device) gives its EXPECTED figure."""
    module = importlib.import_module(f"experiments.configs.{name}")
    expected = module.EXPECTED
    command = [sys.executable, "-m", f"experiments.{plan.script_of(module.get_config())}",
               f"--workdir={tmp_path}", f"--config=experiments/configs/{name}.py", "--noplots"]
    if name == "mnist":
        command.append(f"--config.data_dir={request.getfixturevalue('data_dir')}")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, timeout=3600)
    summary = json.loads((tmp_path / "summary.json").read_text())
    value = summary[expected["split"]][expected["metric"]]
    assert abs(value - expected["value"]) <= expected["tolerance"], (
        f"{name}: {expected['split']} {expected['metric']} = {value:.4f}; the config states "
        f"{expected['value']} ± {expected['tolerance']}: a regression, or restate the result")


# --------------------------------------------------------------------------- reading runs


def _workdir(path: Path, config: dict | None, rows: list[dict], record: dict | None) -> Path:
    path.mkdir()
    if config is not None:
        (path / "config.json").write_text(json.dumps(config))
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if record is not None:
        (path / results.RUN_RECORD).write_text(json.dumps(record))
    return path


def test_read_run_of_unfinished_and_failed_runs(tmp_path: Path):
    config = {"seed": 2, "optimizer": {"learning_rate": 0.1}, "num_train_steps": 10,
              "best_metric": "loss", "best_mode": None}
    rows = [{"step": 2, "split": "val", "loss": 0.5, "accuracy": 0.7},
            {"step": 4, "split": "val", "loss": 0.4, "accuracy": 0.6},
            {"step": 6, "split": "val", "loss": 0.45, "accuracy": 0.8}]
    run = results.read_run(_workdir(tmp_path / "a", config, rows, None))
    assert (run.status, run.step, run.total_steps, run.wall_s) == ("unfinished", 6, 10, None)
    assert run.config["optimizer.learning_rate"] == 0.1
    assert run.metrics == {"val_loss": 0.45, "val_accuracy": 0.8,  # last validation
                           "best_val_loss": 0.4, "best_val_accuracy": 0.6}  # lowest loss
    record = {"attempts": [{"returncode": 1, "wall_s": 2.5, "error": "boom"},
                           {"returncode": 1, "wall_s": 1.5, "error": "no data"}]}
    failed = _workdir(tmp_path / "b", None, [], record)
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        results.read_run(failed)
    run = results.read_run(failed, config)
    assert (run.status, run.error, run.wall_s, run.metrics) == ("failed", "no data", 4.0, {})


def test_summarise_groups_orders_and_skips_unfinished():
    rows = [{"lr": lr, "seed": s, "status": "completed", "test_acc": lr * 10 + s}
            for lr in (0.1, 0.01) for s in (0, 1, 2)]
    rows.append({"lr": 0.01, "seed": 3, "status": "unfinished", "test_acc": 99.0})
    summary = results.summarise(rows, ["lr"])
    assert [s["lr"] for s in summary] == [0.01, 0.1] and [s["n"] for s in summary] == [3, 3]
    assert summary[0]["runs"] == 4
    assert summary[0]["test_acc_mean"] == pytest.approx(1.1)  # 0.1 + mean(0, 1, 2)
    assert summary[0]["test_acc_std"] == pytest.approx(1.0)
    assert summary[0]["test_acc_ci_hi"] == pytest.approx(1.1 + 4.303 / math.sqrt(3), abs=1e-3)
