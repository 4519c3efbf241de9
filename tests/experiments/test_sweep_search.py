"""`experiments.sweep --search=optuna` (issue 24 item 3).

The study logic (seeding, continuing, resuming a trial left running, pruning) is checked with a
fake launcher whose "runs" write their metrics at once (milliseconds); one real local search of
the tiny config over the learning rate checks the whole command: it beats the default config's
validation loss, and a rerun with more trials continues the same study.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest

from experiments import sweep
from experiments.sweep import results, search, space
from experiments.sweep.local import Run

ROOT = Path(__file__).resolve().parents[2]
TINY = "experiments/configs/tiny.py"
DIMS = [space.Dim("optimizer.learning_rate", 1e-4, 1.0, log=True, integer=False)]


def _loss(lr: float, step: int) -> float:
    """A made-up validation loss: best near lr = 10**-2.5, a bit higher at the early step."""
    return (math.log10(lr) + 2.5) ** 2 + (0.5 if step < 6 else 0.0)


class FakeLauncher:
    """Writes a run's metrics.jsonl and summary.json when started; nothing is ever running."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def start(self, run: Run) -> Run:
        self.started.append(run.name)
        run.workdir.mkdir(parents=True, exist_ok=True)
        lr = run.settings["optimizer.learning_rate"]
        rows = [{"step": s, "split": "val", "loss": _loss(lr, s)} for s in (3, 6)]
        (run.workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (run.workdir / "config.json").write_text(json.dumps(
            {"optimizer": {"learning_rate": lr}, "seed": 0, "num_train_steps": 6}))
        (run.workdir / "summary.json").write_text(json.dumps(
            {"status": "completed", "step": 6, "val": {"loss": _loss(lr, 6)}}))
        return run

    def alive(self, handles):
        return [False for _ in handles]

    def stop(self, handle):  # pragma: no cover - never alive
        raise AssertionError("a fake run is never running")

    def finish(self, handle, *, stopped):
        return {"outcome": "completed", "returncode": 0}

    def interrupt(self, handles):
        pass


def _make_run(directory: Path):
    def make(number: int, params: dict) -> Run:
        name = f"trial={number:04d}"
        return Run(name, directory / name, dict(params), 0, "classify", [],
                   SimpleNamespace(num_train_steps=6))
    return make


def _study(directory: Path, n: int, launcher=None, startup: int = 3, seed: int = 7):
    directory.mkdir(parents=True, exist_ok=True)
    study = search.open_study(directory, "minimize", startup)
    failed = search.run_study(study, n, 1, DIMS, _make_run(directory),
                              launcher or FakeLauncher(), kind="tpe", seed=seed,
                              startup=startup, metric="loss", prune=True, poll_s=0.0)
    assert failed == 0
    return study


def _history(study) -> list[tuple[int, str, dict, float | None]]:
    return [(t.number, t.state.name, t.params, t.value) for t in study.trials]


def test_a_seeded_search_repeats_and_continues_as_if_never_stopped(tmp_path: Path):
    whole = _history(_study(tmp_path / "a", 10))
    assert len(whole) == 10 and len({json.dumps(p) for _, _, p, _ in whole}) == 10
    assert _history(_study(tmp_path / "b", 10)) == whole  # same seed: the same search
    _study(tmp_path / "c", 4)
    launcher = FakeLauncher()
    continued = _study(tmp_path / "c", 10, launcher)  # the same journal: continued
    assert _history(continued) == whole
    assert launcher.started == [f"trial={n:04d}" for n in range(4, 10)]  # none repeated
    other = _history(_study(tmp_path / "d", 10, seed=8))  # another seed: another search
    assert [p for _, _, p, _ in other] != [p for _, _, p, _ in whole]


def test_tpe_finds_the_fake_optimum_and_pruning_marks_runs(tmp_path: Path):
    study = _study(tmp_path, 16)
    states = [t.state for t in study.trials]
    assert optuna.trial.TrialState.PRUNED in states, states
    best = study.best_trial
    assert abs(math.log10(best.params["optimizer.learning_rate"]) + 2.5) < 0.5
    for t in study.trials:
        workdir = tmp_path / f"trial={t.number:04d}"
        record = results.read_json(workdir / results.RUN_RECORD)
        if t.state == optuna.trial.TrialState.PRUNED:
            assert record["pruned"] == {"trial": t.number, "step": 3}
            assert results.read_run(workdir).status == "pruned"
        else:
            assert record is None and results.read_run(workdir).status == "completed"


def test_a_trial_left_running_is_resumed_with_its_values(tmp_path: Path):
    study = search.open_study(tmp_path, "minimize", 3)
    trial = study.ask()  # a sweep that stopped while trial 0 ran
    params = search.suggest(trial, DIMS)
    launcher = FakeLauncher()
    _study(tmp_path, 2, launcher)
    again = search.open_study(tmp_path, "minimize", 3)
    assert [t.state.name for t in again.trials] == ["COMPLETE", "COMPLETE"]
    assert again.trials[0].params == params
    assert launcher.started == ["trial=0000", "trial=0001"]


@pytest.mark.parametrize(("args", "message"), [
    (["--space=optimizer.learning_rate=1e-3:1e-1:log"], "--search=optuna needs --trials=N"),
    (["--trials=2"], "needs --space=FIELD=LOW:HIGH"),
    (["--trials=2", "--space=optimizer.learning_rate=0.1:0.01"], "LOW < HIGH"),
    (["--trials=2", "--space=optimizer.learning_rate=0:0.1:log"], "LOW > 0 for log"),
    (["--trials=2", "--space=optimizer.learning_rate=1e-3:1e-1:cubic"], "FIELD=LOW:HIGH:log"),
    (["--trials=2", "--space=nope=1:2"], "unknown config field 'nope'"),
    (["--trials=2", "--space=seed=1:2"], "is given twice (or is seed)"),
    (["--trials=2", "--space=batch_size=8:16", "--grid=seed=1,2"], "not --grid or --seeds"),
    (["--trials=0", "--space=batch_size=8:16"], "trials"),
])
def test_search_usage_errors_exit_2(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    code = sweep.main(["sweep", f"--workdir={tmp_path / 's'}", f"--config={TINY}",
                       "--search=optuna", *args])
    err = capsys.readouterr().err
    assert code == 2 and "usage error" in err and message in err, err
    assert not (tmp_path / "s").exists()


def test_parse_space_reads_floats_log_and_integers():
    dims = space.parse_space(["optimizer.learning_rate=1e-4:0.1:log", "config.batch_size=8:64"])
    assert dims == [space.Dim("optimizer.learning_rate", 1e-4, 0.1, True, False),
                    space.Dim("batch_size", 8.0, 64.0, False, True)]


# --------------------------------------------------------------------------- a real search


def _val_loss(workdir: Path) -> float:
    return float(json.loads((workdir / "summary.json").read_text())["val"]["loss"])


def _trials(directory: Path) -> list[dict]:
    with (directory / search.TRIALS_CSV).open() as f:
        return list(csv.DictReader(f))


def test_a_local_search_beats_the_default_and_a_rerun_continues(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("XLA_FLAGS", raising=False)  # the runs get 1 CPU device, as users run
    monkeypatch.chdir(ROOT)
    default = tmp_path / "default"  # the config's own learning rate, run as the trials run
    subprocess.run([sys.executable, "-m", "experiments.classify", f"--workdir={default}",
                    f"--config={TINY}", "--noplots"], check=True, capture_output=True,
                   timeout=600)
    directory = tmp_path / "search"
    args = ["sweep", f"--workdir={directory}", f"--config={TINY}", "--noplots",
            "--search=optuna", "--space=optimizer.learning_rate=1e-3:0.3:log"]
    assert sweep.main([*args, "--trials=6"]) == 0
    first = _trials(directory)
    assert [int(t["trial"]) for t in first] == list(range(6))
    assert sweep.main([*args, "--trials=9"]) == 0
    out = capsys.readouterr().out
    second = _trials(directory)
    assert [int(t["trial"]) for t in second] == list(range(9))
    assert second[:6] == first  # finished trials kept as they were, not repeated
    for t in second:
        record = results.read_json(Path(t["workdir"]) / results.RUN_RECORD)
        assert len(record["attempts"]) == 1, t  # each trial trained once
        lr = float(json.loads((Path(t["workdir"]) / "config.json").read_text())
                   ["optimizer"]["learning_rate"])
        assert lr == float(t["optimizer.learning_rate"])  # the run trained the trial's value
    done = [t for t in second if t["state"] == "complete"]
    best = min(done, key=lambda t: float(t["value"]))
    assert float(best["value"]) == _val_loss(Path(best["workdir"]))
    assert float(best["value"]) < _val_loss(default), (best, _val_loss(default))
    rows = list(csv.DictReader((directory / "results.csv").open()))
    assert sorted(r["run"] for r in rows) == [f"trial={n:04d}" for n in range(9)]
    states = {f"trial={int(t['trial']):04d}": t["state"] for t in second}
    assert {r["run"]: r["status"] for r in rows} == {  # a pruned trial is pruned in the table
        n: "pruned" if s == "pruned" else "completed" for n, s in states.items()}
    assert f"best: trial {best['trial']}" in out
