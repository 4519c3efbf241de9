r"""Seed and setting sweeps with result tables: every grid combination x every seed, each run in
its own workdir, through the same command line as a direct run.

    python -m experiments.sweep --workdir=runs/mnist_sweep --config=experiments/configs/mnist.py \
        --config.data_dir=../shared/data --seeds=0,1,2 \
        --grid=optimizer.learning_rate=0.003,0.001 --jobs=1
    python -m experiments.sweep ... --dry-run          # list the runs, their workdirs, commands
    python -m experiments.sweep --report runs/mnist_sweep  # rebuild the tables from workdirs
    python -m experiments.sweep ... --launcher=slurm --slurm_partition=gpu --slurm_gpus=1
    python -m experiments.sweep --workdir=runs/lr_search --config=experiments/configs/tiny.py \
        --search=optuna --trials=12 --space=optimizer.learning_rate=1e-4:1e-1:log

Each run is the subprocess `python -m experiments.classify` (or `segment`: the config's task,
`config.task.name` or the data set's) with `--workdir=DIR/<settings> --config=FILE`, the
sweep's own `--config.FIELD=VALUE` overrides, the grid values and `--config.seed=S`: the
same run as that direct command (bitwise the same metrics). Workdirs are named by the
settings, e.g. `optimizer.learning_rate=0.003,seed=0`. Running the same sweep again skips
finished runs (a completed `summary.json` for the same config) and reruns unfinished ones,
which the trainer resumes exactly; adding grid values adds runs. `--jobs=N` runs N at a time
as separate processes sharing the CPUs (`--pin` gives each 1/N of them: see
`experiments.sweep.local.execute` for what that does to bitwise equality). Each run's stdout and
stderr go to `<workdir>/sweep.log`; attempts, exit codes and wall times to
`<workdir>/sweep_run.json`. A failing run does not stop the others; it is reported with the
end of its log, and the sweep exits with 1. SIGTERM, SIGINT or SIGHUP to the sweep stops its
running runs at a checkpoint (forwarded as SIGTERM), waits for them and exits 128 + signal
(143, 130, 129); a run whose workdir another process holds is not started (reported BUSY, never
recorded as failed).
`--launcher=slurm`: one SLURM job-array task per run (submitit; `experiments.sweep.slurm`),
the same command line; preempted tasks checkpoint, are requeued and resume.
`--search=optuna`: an Optuna study over `--space` instead of the grid (`experiments.sweep.search`).
At the end DIR gets results.csv, summary.csv, summary.md and plots/ (`experiments.sweep.results`).
Exit codes: 0 all runs completed, 1 a run failed, 2 a usage error.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from absl import flags

from experiments.cli_errors import UsageError
from experiments.cli_help import help_text, wants_help
from experiments.sweep import results, search, slurm, space
from experiments.sweep.local import LOG_FILE, Run, Stopped, execute
from experiments.sweep.plan import find_runs, is_finished, parse_grid, parse_seeds, plan

# --------------------------------------------------------------------------- flags


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("workdir", None, "sweep directory: one workdir per run, and the tables",
                        flag_values=fv)
    flags.DEFINE_string("config", None, "config file (FILE.py or FILE.py:ARG), as for "
                        "experiments.classify; --config.FIELD=VALUE overrides go to every run",
                        flag_values=fv)
    flags.DEFINE_string("seeds", None, "comma-separated seeds (default: the config's seed)",
                        flag_values=fv)
    flags.DEFINE_multi_string("grid", [], "FIELD=V1,V2,...: values of one config field "
                              "(repeat for more fields; every combination runs)", flag_values=fv)
    flags.DEFINE_integer("jobs", 1, "runs at a time, as separate processes", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_bool("pin", False, "with --jobs>1, pin each run to 1/jobs of the CPUs (faster "
                      "on a busy machine, but float results then match a direct run under the "
                      "same CPUs, `taskset -c`, not a plain one)", flag_values=fv)
    flags.DEFINE_bool("dry_run", False, "list the runs, workdirs and commands; run nothing",
                      flag_values=fv)
    flags.DEFINE_bool("report", False, "only rebuild results/summary from the workdirs in the "
                      "directories given as arguments (or in --workdir)", flag_values=fv)
    flags.DEFINE_bool("plots", True, "plots: each run's (passed on) and the sweep's",
                      flag_values=fv)
    slurm.define_flags(fv)
    space.define_flags(fv)


def parse(argv: Sequence[str]) -> tuple[flags.FlagValues, list[str], list[str]]:
    """(flags, --config.FIELD=VALUE overrides in order, positional arguments) of `argv`."""
    argv = ["--dry_run" if a == "--dry-run" else a for a in argv]
    overrides = [a for a in argv[1:] if a.startswith("--config.")]
    for a in overrides:
        if "=" not in a:
            raise UsageError(f"{a!r}: write config overrides as --config.FIELD=VALUE")
    fv = flags.FlagValues()
    define_flags(fv)
    try:
        rest = fv([a for a in argv if not a.startswith("--config.")])
    except flags.Error as e:
        raise UsageError(str(e)) from e
    return fv, overrides, rest[1:]


# --------------------------------------------------------------------------- main


def _report_main(fv: flags.FlagValues, args: Sequence[str]) -> int:
    dirs = [Path(a) for a in args] or ([Path(fv.workdir)] if fv.workdir else [])
    if not dirs:
        raise UsageError("--report needs directories: --report DIR... (or --workdir=DIR)")
    runs = find_runs(dirs)
    if not runs:
        raise UsageError(f"--report: no workdir (a folder with config.json) in {dirs}")
    if fv.workdir:
        target = Path(fv.workdir)
    elif len(dirs) == 1 and dirs[0] not in runs:
        target = dirs[0]
    else:
        raise UsageError("--report over several directories (or single runs) needs "
                         "--workdir=DIR for the tables")
    results.report(target, runs, plots=fv.plots)
    return 0


def _check_workdir(workdir: Path) -> None:
    """--workdir must be (or be creatable as) a folder: checked before --dry-run answers."""
    for p in [workdir, *workdir.parents]:
        if p.exists():
            if not p.is_dir():
                what = "is a file" if p == workdir else f"is inside {str(p)!r}, a file"
                raise UsageError(f"--workdir={str(workdir)!r} {what}; expected a folder (new "
                                 "or an earlier sweep's)")
            break


def _sweep_main(fv: flags.FlagValues, overrides: Sequence[str], args: Sequence[str]) -> int:
    if args:
        raise UsageError(f"unexpected arguments {list(args)} (did you mean --report?)")
    if not fv.workdir or not fv.config:
        raise UsageError("--workdir=DIR and --config=FILE are required (or --report DIR...)")
    if any(o.startswith("--config.seed=") for o in overrides) and fv.seeds is not None:
        raise UsageError("give the seeds with --seeds only, not also --config.seed")
    workdir = Path(fv.workdir)
    if fv.search != "grid":
        _check_workdir(workdir)
        return search.main(fv, overrides, workdir)
    grid = parse_grid(fv.grid)
    seeds = parse_seeds(fv.seeds) if fv.seeds is not None else None
    _check_workdir(workdir)
    runs = plan(workdir, fv.config, overrides, grid, seeds, run_plots=fv.plots)
    finished = [r for r in runs if is_finished(r)]
    todo = [r for r in runs if r not in finished]
    if fv.dry_run:
        for r in runs:
            state = "finished" if r in finished else (
                "resume" if (r.workdir / "config.json").exists() else "new")
            print(f"{state:8s} {r.workdir}\n         {shlex.join(r.command)}")
        print(f"{len(runs)} runs: {len(finished)} finished, {len(todo)} to run")
        return 0
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"experiments.sweep: error: cannot create --workdir={str(workdir)!r}: "
              f"{e.strerror or e}", file=sys.stderr)
        return 1
    if fv.launcher == "slurm":
        return _slurm_sweep(fv, workdir, runs, todo, list(grid))
    print(f"sweep: {len(runs)} runs in {workdir} ({len(finished)} finished, skipped; "
          f"{len(todo)} to run, {fv.jobs} at a time)", flush=True)
    failures = execute(todo, fv.jobs, pin=fv.pin)
    results.report(workdir, find_runs([workdir]), list(grid), planned=runs, plots=fv.plots)
    for run, attempt in failures:
        if attempt["outcome"] == "busy":
            print(f"BUSY {run.name}: not run, its workdir is in use by another process",
                  file=sys.stderr)
            continue
        print(f"FAILED {run.name} (exit {attempt['returncode']}): {attempt['reason']}\n"
              f"log {run.workdir / LOG_FILE}, last lines:\n{attempt['error']}\n",
              file=sys.stderr)
    return 1 if failures else 0


def _slurm_sweep(fv: flags.FlagValues, workdir: Path, runs: Sequence[Run],
                 todo: Sequence[Run], fields: Sequence[str]) -> int:
    """Submit the unfinished runs (those not still queued from an earlier submission) as one
    job array; unless --noslurm_wait, follow them and write the tables (exit 1 unless every run
    completed)."""
    try:
        queued = slurm.still_queued(workdir, [r.name for r in todo])
        new = [r for r in todo if r.name not in queued]
        ids = slurm.submit(workdir, new, slurm.options_from(fv))
    except (OSError, RuntimeError, subprocess.SubprocessError) as e:
        print(f"experiments.sweep: error: SLURM submission failed: {e}", file=sys.stderr)
        return 1
    first = sorted({i.split("_")[0] for i in ids.values()})
    print(f"sweep: {len(runs)} runs in {workdir} ({len(runs) - len(todo)} finished, skipped; "
          f"{len(queued)} still queued; {len(ids)} submitted to SLURM as job array "
          f"{','.join(first) or '-'}; task logs in {workdir / slurm.LOG_DIR})", flush=True)
    if not fv.slurm_wait:
        print(f"collect the results when they are done: python -m experiments.sweep --report "
              f"{workdir}")
        return 0
    known = results.read_json(workdir / slurm.JOBS_FILE) or {}
    follow = {r.name: str(known[r.name]) for r in todo if r.name in known}
    try:
        slurm.wait(follow, {r.name: r.workdir for r in todo})
    except OSError as e:
        print(f"experiments.sweep: error: {e}; the tasks go on: collect them later with "
              f"--report {workdir}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"experiments.sweep: interrupted; the SLURM tasks go on: the same command follows "
              f"them again, or collect them with --report {workdir}", file=sys.stderr)
        return 130
    got = results.report(workdir, find_runs([workdir]), fields, planned=runs, plots=fv.plots)
    planned = {r.workdir for r in runs}
    bad = [r for r in got if r.workdir in planned and r.status != "completed"]
    for r in bad:
        print(f"NOT COMPLETED {r.name}: {r.status} {r.error.splitlines()[-1] if r.error else ''}"
              f"(task log: {workdir / slurm.LOG_DIR}, run log: {r.workdir / LOG_FILE})",
              file=sys.stderr)
    return 1 if bad else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run with `argv` (argv[0] is the program name; default sys.argv); returns the exit code."""
    argv = list(sys.argv if argv is None else argv)
    if wants_help(argv):
        fv = flags.FlagValues()
        define_flags(fv)
        print(help_text("experiments.sweep", __doc__, fv))
        return 0
    try:
        fv, overrides, args = parse(argv)
        if fv.report:
            return _report_main(fv, args)
        return _sweep_main(fv, overrides, args)
    except UsageError as e:
        print(f"experiments.sweep: usage error: {e}", file=sys.stderr)
        return 2
    except Stopped as e:
        print(f"experiments.sweep: {e}: the running runs were stopped at a checkpoint; run the "
              "same command again to resume", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        print("experiments.sweep: interrupted; run the same command again to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
