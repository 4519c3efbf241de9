"""Hyperparameter search with Optuna: `--search=optuna --trials=N --space=FIELD=LOW:HIGH[:log]`.

Each trial is a run like a grid run (the direct command with `--config.FIELD=VALUE` for its
sampled values, in `DIR/trial=NNNN`), started by the same launcher (local subprocesses or SLURM
tasks). The study lives in `DIR/optuna.journal` (Optuna's JournalFileBackend: an append-only file,
safe on a shared filesystem), so the same command again continues the same study: it resumes the
trials an interrupted sweep left running (their workdirs resume from their checkpoints), never
repeats a finished one, and adds trials until the study has N. The sampler (TPE, or random) is
seeded per trial with `--search_seed` + the trial's number, so a search run with `--jobs=1` is
reproducible, interrupted or not (with parallel trials, what each trial sees of the others
depends on timing). Pruning (Optuna's MedianPruner) reads the validation rows the trainer
writes to each trial's metrics.jsonl at its eval steps, in step order; a pruned trial is
stopped at a checkpoint, keeps its workdir and is marked `pruned` in its sweep_run.json, hence in
results.csv. The objective is the completed run's final validation metric (`summary.json`).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.cli_errors import UsageError
from experiments.sweep import plan, results, trials
from experiments.sweep.extras import require
from experiments.sweep.local import LOG_FILE, Run, Stopped, _Signals
from experiments.sweep.space import Dim, parse_space

STUDY_FILE = "optuna.journal"
STUDY_NAME = "experiments.sweep"
TRIALS_CSV = "trials.csv"


def open_study(directory: Path, direction: str, startup: int) -> Any:
    """The study of `directory/optuna.journal` (created, or loaded to continue it)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(directory / STUDY_FILE)))
    study = optuna.create_study(storage=storage, study_name=STUDY_NAME, direction=direction,
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=startup),
                                load_if_exists=True)
    if study.direction.name.lower() != direction:
        raise UsageError(f"--direction={direction}, but the study in {directory} was made to "
                         f"{study.direction.name.lower()}")
    return study


def sampler(kind: str, seed: int, startup: int) -> Any:
    """A fresh seeded sampler (one per trial: reproducible whatever was interrupted)."""
    import optuna

    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)


def suggest(trial: Any, dims: Sequence[Dim]) -> dict[str, float | int]:
    return {d.field: (trial.suggest_int(d.field, int(d.low), int(d.high), log=d.log)
                      if d.integer else
                      trial.suggest_float(d.field, d.low, d.high, log=d.log)) for d in dims}


def trial_run(directory: Path, config_arg: str, overrides: Sequence[str], number: int,
              params: dict[str, Any], *, run_plots: bool) -> Run:
    """Trial `number`'s run: the direct command with its values (floats as repr: exact)."""
    name = f"trial={number:04d}"
    values = [f"--config.{f}={v!r}" for f, v in params.items()]
    config = plan.load_config(config_arg, [*overrides, *values])
    args = [f"--workdir={directory / name}", f"--config={config_arg}", *overrides, *values]
    if not run_plots:
        args.append("--noplots")
    return Run(name, directory / name, dict(params), int(config.seed), plan.script_of(config),
               args, config)


def val_rows(workdir: Path, metric: str) -> list[tuple[int, float]]:
    """(step, value) of `metric` in the run's validation rows so far, in step order."""
    from cnnjax.train.runner.reporting import read_metrics

    rows = read_metrics(workdir / "metrics.jsonl")
    return sorted((int(r["step"]), float(r[metric])) for r in rows
                  if r.get("split") == "val" and isinstance(r.get(metric), int | float))


def objective_value(workdir: Path, metric: str) -> float | None:
    summary = results.read_json(workdir / "summary.json")
    if not (isinstance(summary, dict) and summary.get("status") == "completed"):
        return None
    value = (summary.get("val") or {}).get(metric)
    return float(value) if isinstance(value, int | float) else None


def mark_pruned(run: Run, info: dict[str, Any]) -> None:
    """Record in the run's sweep_run.json that the search pruned it (results: status pruned)."""
    path = run.workdir / results.RUN_RECORD
    record = results.read_json(path)
    record = record if isinstance(record, dict) else {"attempts": []}
    record["pruned"] = info
    path.write_text(json.dumps(record, indent=2) + "\n")


@dataclasses.dataclass
class _Active:
    trial: Any
    run: Run
    handle: Any
    total: int
    reported: set[int]
    pruned_at: int | None = None


def _check_pruning(a: _Active, metric: str, prune: bool) -> None:
    """Report the new validation rows in step order; prune at the first step the pruner says
    (never at the last step: the run is done by then)."""
    for step, value in val_rows(a.run.workdir, metric):
        if step in a.reported or a.pruned_at is not None:
            continue
        a.trial.report(value, step)
        a.reported.add(step)
        if prune and step < a.total and a.trial.should_prune():
            a.pruned_at = step


def _conclude(study: Any, a: _Active, launcher: Any, metric: str, out: Any) -> str:
    """Tell the study how trial `a` ended; returns its state's name."""
    import optuna

    attempt = launcher.finish(a.handle, stopped=a.pruned_at is not None)
    _check_pruning(a, metric, prune=False)  # rows written since the last look
    number = a.trial.number
    if a.pruned_at is not None:
        mark_pruned(a.run, {"trial": number, "step": a.pruned_at})
        study.tell(number, state=optuna.trial.TrialState.PRUNED)
        state = f"pruned at step {a.pruned_at}"
    elif (value := objective_value(a.run.workdir, metric)) is not None:
        study.tell(number, value)
        state = f"done val_{metric}={value:.6g}"
    elif attempt.get("outcome") == "stopped":
        return "stopped"  # stays RUNNING in the study: the same command resumes it
    else:
        study.tell(number, state=optuna.trial.TrialState.FAIL)
        state = (f"FAILED (exit {attempt.get('returncode')}): {attempt.get('reason', '')}; "
                 f"log {a.run.workdir / LOG_FILE}")
    print(f"trial {number} {a.run.settings}: {state}", file=out, flush=True)
    return state


def run_study(study: Any, n_trials: int, jobs: int, dims: Sequence[Dim], make_run: Any,
              launcher: Any, *, kind: str, seed: int, startup: int, metric: str, prune: bool,
              poll_s: float = 0.5, out: Any = None) -> int:
    """Run trials until the study has `n_trials` ended ones, `jobs` at a time; returns how
    many failed. Trials left RUNNING by an interrupted sweep are resumed first."""
    import optuna

    resume = [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    active: list[_Active] = []
    failed = 0
    with _Signals() as signals:
        while signals.got is None:
            while len(active) < jobs and signals.got is None:
                if resume:
                    frozen = resume.pop(0)
                    trial = optuna.Trial(study, frozen._trial_id)
                    params, reported = frozen.params, set(frozen.intermediate_values)
                elif len(study.trials) < n_trials:
                    study.sampler = sampler(kind, seed + len(study.trials), startup)
                    trial = study.ask()
                    params, reported = suggest(trial, dims), set()
                else:
                    break
                run = make_run(trial.number, params)
                active.append(_Active(trial, run, launcher.start(run),
                                      int(run.config.num_train_steps or 0), reported))
            if not active:
                break
            time.sleep(poll_s)
            alive = launcher.alive([a.handle for a in active])
            for a, is_alive in zip(list(active), alive, strict=True):
                was_pruned = a.pruned_at is not None
                _check_pruning(a, metric, prune)
                if a.pruned_at is not None and not was_pruned and is_alive:
                    launcher.stop(a.handle)
                if not is_alive:
                    active.remove(a)
                    failed += _conclude(study, a, launcher, metric, out).startswith("FAILED")
        if signals.got is not None:
            launcher.interrupt([a.handle for a in active])
            raise Stopped(signals.got)
    return failed


def write_trials(directory: Path, study: Any) -> Path:
    """DIR/trials.csv: number, state, value, params and workdir of every trial."""
    rows = [{"trial": t.number, "state": t.state.name.lower(), "value": t.value,
             **t.params, "workdir": str(directory / f"trial={t.number:04d}")}
            for t in study.trials]
    columns = ["trial", "state", "value", *dict.fromkeys(k for t in study.trials
                                                          for k in t.params), "workdir"]
    return results.write_csv(directory / TRIALS_CSV, rows, columns)


def main(fv: Any, overrides: Sequence[str], directory: Path) -> int:
    """`experiments.sweep --search=optuna`: check the flags, run the study, write the tables."""
    require("optuna")
    if fv.launcher == "slurm":
        require("submitit")
    if fv.trials is None:
        raise UsageError("--search=optuna needs --trials=N (the study's number of trials)")
    if fv.grid or fv.seeds is not None:
        raise UsageError("--search=optuna takes --space, not --grid or --seeds (a trial is one "
                         "run; give its seed with --config.seed)")
    dims = parse_space(fv.space)
    direction = fv.direction or ("minimize" if "loss" in fv.objective else "maximize")
    probe = {d.field: (int(d.low) if d.integer else d.low) for d in dims}
    trial_run(directory, fv.config, overrides, 0, probe, run_plots=fv.plots)  # usage errors
    if fv.dry_run:
        print(f"search: an Optuna study of {fv.trials} trials over "
              f"{[d.field for d in dims]} in {directory / STUDY_FILE}")
        return 0
    directory.mkdir(parents=True, exist_ok=True)
    study = open_study(directory, direction, fv.startup_trials)
    launcher = (trials.SlurmTrials(directory, fv) if fv.launcher == "slurm"
                else trials.LocalTrials())
    print(f"search: {len(study.trials)} trials so far in {directory / STUDY_FILE}; running up "
          f"to {fv.trials}, {fv.jobs} at a time ({fv.launcher})", flush=True)
    try:
        failed = run_study(study, fv.trials, fv.jobs, dims, lambda n, p: trial_run(
            directory, fv.config, overrides, n, p, run_plots=fv.plots), launcher,
            kind=fv.sampler, seed=fv.search_seed, startup=fv.startup_trials,
            metric=fv.objective, prune=fv.prune, poll_s=launcher.poll_s)
    except Stopped as e:
        if not launcher.detached:
            raise
        print(f"experiments.sweep: {e}: the trials' SLURM jobs go on; the same command follows "
              "them again and continues the study", file=sys.stderr)
        return 128 + e.signum
    write_trials(directory, study)
    results.report(directory, plan.find_runs([directory]), [d.field for d in dims], plots=fv.plots)
    try:
        best = study.best_trial
        print(f"best: trial {best.number} {best.params} val_{fv.objective}={best.value:.6g} "
              f"({directory / f'trial={best.number:04d}'})")
    except ValueError:
        print("best: no trial completed")
    return 1 if failed else 0
