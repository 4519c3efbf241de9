"""Planning a sweep: the grid and seeds of the command line -> the runs (workdir, command,
resolved config), and which of them a previous sweep already finished.

A run's command is the direct command (`python -m experiments.classify|segment --workdir=...
--config=FILE --config.FIELD=VALUE ...`); its config is loaded by `experiments.common`'s own
config parsing, so a sweep resolves exactly what the direct command would.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.cli_errors import UsageError
from experiments.sweep import results
from experiments.sweep.local import Run

SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._=,+-")


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


def load_config(config_arg: str, overrides: Sequence[str]) -> Any:
    """The resolved, validated config of `--config=config_arg` + overrides, loaded by
    `experiments.common.load_config_arg`: exactly as the entry points load it."""
    from cnnjax.train.runner.config import resolve_config, validate_config
    from experiments.common import load_config_arg

    try:
        config = resolve_config(load_config_arg(config_arg, overrides))
        validate_config(config)
    except (AttributeError, KeyError, ValueError, TypeError) as e:  # UsageError included
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
