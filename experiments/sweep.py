r"""Seed and setting sweeps with result tables: every grid combination x every seed, each run in
its own workdir, through the same command line as a direct run.

    python -m experiments.sweep --workdir=runs/mnist_sweep --config=experiments/configs/mnist.py \
        --config.data_dir=../shared/data --seeds=0,1,2 \
        --grid=optimizer.learning_rate=0.003,0.001 --jobs=1
    python -m experiments.sweep ... --dry-run          # list the runs, their workdirs, commands
    python -m experiments.sweep --report runs/mnist_sweep  # rebuild the tables from workdirs

Each run is the subprocess `python -m experiments.classify` (or `segment`: the config's task,
`config.task.name` or the data set's) with `--workdir=DIR/<settings> --config=FILE`, the
sweep's own `--config.FIELD=VALUE` overrides, the grid values and `--config.seed=S`: the
same run as that direct command (bitwise the same metrics). Workdirs are named by the
settings, e.g. `optimizer.learning_rate=0.003,seed=0`. Running the same sweep again skips
finished runs (a completed `summary.json` for the same config) and reruns unfinished ones,
which the trainer resumes exactly; adding grid values adds runs. `--jobs=N` runs N at a time
as separate processes sharing the CPUs (`--pin` gives each 1/N of them: see
`experiments.sweep_run.execute` for what that does to bitwise equality). Each run's stdout and
stderr go to `<workdir>/sweep.log`; attempts, exit codes and wall times to
`<workdir>/sweep_run.json`. A failing run does not stop the others; it is reported with the
end of its log, and the sweep exits with 1. SIGTERM, SIGINT or SIGHUP to the sweep stops its
running runs at a checkpoint (forwarded as SIGTERM), waits for them and exits 128 + signal
(143, 130, 129); a run whose workdir another process holds is not started (reported BUSY, never
recorded as failed).
At the end DIR gets results.csv, summary.csv, summary.md and plots/ (`experiments.results`).
Exit codes: 0 all runs completed, 1 a run failed, 2 a usage error.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from absl import flags
from ml_collections import config_flags

from experiments import results
from experiments.cli_help import help_text, wants_help
from experiments.sweep_run import LOG_FILE, Run, Stopped, execute

SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._=,+-")


class UsageError(ValueError):
    """A bad command line: exit code 2, no traceback."""


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


def split_values(text: str) -> list[str]:
    """'0.1,0.01' -> ['0.1', '0.01']; commas inside () [] {} or quotes do not split."""
    parts, depth, quote, current = [], 0, "", ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        current += ch
    parts.append(current)
    return [p.strip() for p in parts]


def parse_grid(specs: Sequence[str]) -> dict[str, list[str]]:
    """['a.b=1,2', 'c=x'] -> {'a.b': ['1', '2'], 'c': ['x']} (checked: no repeats, no blanks)."""
    grid: dict[str, list[str]] = {}
    for spec in specs:
        field, sep, values = spec.partition("=")
        field = field.strip().removeprefix("config.")
        items = split_values(values) if sep else []
        if not field or not items or any(v == "" for v in items):
            raise UsageError(f"--grid={spec!r}; expected FIELD=V1,V2,... (e.g. "
                             "--grid=optimizer.learning_rate=0.01,0.001)")
        if field in grid or field == "seed":
            raise UsageError(f"--grid field {field!r} is given twice (or is seed: use --seeds)")
        if len(set(items)) != len(items):
            raise UsageError(f"--grid={spec!r} repeats a value")
        grid[field] = items
    return grid


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in split_values(text)]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0 or max(seeds) > 2**63 - 1:
        raise UsageError(f"--seeds={text!r}; expected distinct integers in 0..2**63-1, "
                         "e.g. 0,1,2")
    return seeds


# --------------------------------------------------------------------------- planning


def load_config(config_arg: str, overrides: Sequence[str]) -> Any:
    """The resolved, validated config of `--config=config_arg` + overrides, parsed by
    ml_collections exactly as the entry points parse it."""
    from cnnjax.train.runner.config import resolve_config, validate_config

    path = Path(config_arg.split(":", 1)[0])
    if not path.is_file():
        raise UsageError(f"--config={config_arg}: " + (
            "not a file (expected a get_config() .py file)" if path.exists()
            else "no such config file"))
    argv = ["sweep", f"--config={config_arg}", *overrides]
    fv = flags.FlagValues()
    try:
        config_flags.DEFINE_config_file("config", None, flag_values=fv, sys_argv=argv,
                                        accept_new_attributes=True, lock_config=False)
        fv(argv)
        config = resolve_config(fv.config)
        validate_config(config)
    except (flags.Error, AttributeError, KeyError, ValueError, TypeError) as e:
        raise UsageError(f"config {config_arg!r} with {list(overrides)}: {e}") from e
    return config


def script_of(config: Any) -> str:
    """classify or segment: `config.task.name`, else the data set's own task."""
    from cnnjax import data

    task = config.task.name or data.get_info(config.dataset, config.data_dir,
                                             **dict(config.dataset_options)).task
    return "segment" if task == "segmentation" else "classify"


def value_text(value: Any) -> str:
    """A config value as it appears in a workdir name (floats in Python's shortest form)."""
    if isinstance(value, list | tuple):
        return "-".join(value_text(v) for v in value)
    return repr(value) if isinstance(value, float) else str(value)


MAX_NAME = 255  # bytes in one file name on every common file system


def run_name(settings: dict[str, Any], seed: int) -> str:
    """'field=value,...,seed=S': readable, stable, filesystem-safe (other characters -> _).
    A name over 255 bytes (long grid values) keeps its first 200 characters and the seed, plus
    a hash of the whole: still stable, still unique."""
    text = ",".join([*(f"{k}={value_text(v)}" for k, v in settings.items()), f"seed={seed}"])
    name = "".join(ch if ch in SAFE else "_" for ch in text)
    if len(name.encode()) > MAX_NAME:
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        name = f"{name[:200]},hash={digest},seed={seed}"
    return name


def _get(config: Any, field: str) -> Any:
    node = config
    for part in field.split("."):
        node = node[part]
    return node.to_dict() if hasattr(node, "to_dict") else node


def plan(workdir: Path, config_arg: str, overrides: Sequence[str], grid: dict[str, list[str]],
         seeds: Sequence[int] | None, *, run_plots: bool = True) -> list[Run]:
    """Every grid combination x seed, in order, with its command and resolved config."""
    runs: list[Run] = []
    names: dict[str, str] = {}
    fields = list(grid)
    for values in itertools.product(*grid.values()):
        grid_args = [f"--config.{f}={v}" for f, v in zip(fields, values, strict=True)]
        base = load_config(config_arg, [*overrides, *grid_args])
        for seed in seeds if seeds is not None else [int(base.seed)]:
            config = load_config(config_arg, [*overrides, *grid_args, f"--config.seed={seed}"])
            settings = {f: _get(config, f) for f in fields}
            name = run_name(settings, seed)
            if name in names:
                raise UsageError(f"grid values {names[name]} and {list(values)} give the same "
                                 f"settings ({name}); give each value once")
            names[name] = str(list(values))
            args = [f"--workdir={workdir / name}", f"--config={config_arg}", *overrides,
                    *grid_args, f"--config.seed={seed}"]
            if not run_plots:
                args.append("--noplots")
            runs.append(Run(name, workdir / name, settings, seed, script_of(config), args,
                            config))
    return runs


def is_finished(run: Run) -> bool:
    """A completed summary.json written by a run of the same config (`dataset_info` aside:
    training fills it in from the data)."""
    from cnnjax.checkpoint import to_json

    summary = results.read_json(run.workdir / "summary.json")
    saved = results.read_json(run.workdir / "config.json")
    if not (isinstance(summary, dict) and summary.get("status") == "completed"):
        return False
    if not isinstance(saved, dict):
        return False
    planned = json.loads(json.dumps(to_json(run.config.to_dict())))
    return ({k: v for k, v in saved.items() if k != "dataset_info"}
            == {k: v for k, v in planned.items() if k != "dataset_info"})


# --------------------------------------------------------------------------- main


def find_runs(directories: Sequence[Path]) -> list[Path]:
    """Workdirs (folders with a config.json): each directory itself, or its subfolders."""
    found: list[Path] = []
    for d in directories:
        if not d.is_dir():
            raise UsageError(f"--report: {d} is not a directory")
        if (d / "config.json").exists():
            found.append(d)
        else:
            found += sorted(p for p in d.iterdir() if (p / "config.json").exists())
    return found


def report(directory: Path, workdirs: Sequence[Path], fields: Sequence[str] = (), *,
           planned: Sequence[Run] = (), plots: bool = True, out: Any = None
           ) -> list[results.RunResult]:
    """Read `workdirs`, write the tables (and plots) into `directory`; returns the runs.

    `planned` runs that the sweep attempted but that failed before writing their config.json
    are reported too (failed, with their error), from the config the sweep planned.
    """
    runs = []
    for w in workdirs:
        try:
            runs.append(results.read_run(w))
        except (FileNotFoundError, ValueError) as e:  # a damaged config.json: say, go on
            print(f"experiments.sweep: skipped {w}: {e}", file=sys.stderr)
    runs += [results.read_run(r.workdir, r.config.to_dict()) for r in planned
             if r.workdir not in workdirs and (r.workdir / results.RUN_RECORD).exists()]
    fields = [*fields, *(f for f in results.setting_fields(runs) if f not in fields)]
    for path in results.write_results(directory, runs, fields, plots=plots):
        if path.suffix != ".png":
            print(f"wrote {path}", file=out)
    print((directory / "summary.md").read_text(), file=out)
    return runs


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
    report(target, runs, plots=fv.plots)
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
    grid = parse_grid(fv.grid)
    seeds = parse_seeds(fv.seeds) if fv.seeds is not None else None
    workdir = Path(fv.workdir)
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
    print(f"sweep: {len(runs)} runs in {workdir} ({len(finished)} finished, skipped; "
          f"{len(todo)} to run, {fv.jobs} at a time)", flush=True)
    failures = execute(todo, fv.jobs, pin=fv.pin)
    report(workdir, find_runs([workdir]), list(grid), planned=runs, plots=fv.plots)
    for run, attempt in failures:
        if attempt["outcome"] == "busy":
            print(f"BUSY {run.name}: not run, its workdir is in use by another process",
                  file=sys.stderr)
            continue
        print(f"FAILED {run.name} (exit {attempt['returncode']}): {attempt['reason']}\n"
              f"log {run.workdir / LOG_FILE}, last lines:\n{attempt['error']}\n",
              file=sys.stderr)
    return 1 if failures else 0


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
