"""Which config a command of `experiments.classify`/`segment` runs with.

- `--mode=train`: the `--config` file (default: the script's) with its `--config.FIELD=VALUE`
  overrides.
- `--mode=eval|predict|export` on a workdir that holds a run: the run's own
  `WORKDIR/config.json` (imports, model options, data set, `dataset_info` as trained), with
  the command line's `--config.FIELD=VALUE` overrides applied on top (e.g.
  `--config.data_dir=/new/place` or `--config.eval_batch_size=8`). A `--config` file given
  too is not used: when it differs from the run's config a warning names the fields that
  differ (it is never silently preferred). Without `config.json` they refuse to run (exit 1,
  naming the file) unless a `--config` file is given explicitly: the script's default config
  would build another model.

`which_weights`: `--weights=ema|raw` for that config (the EMA by default when the run has one).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections
from absl import flags
from ml_collections import config_flags

from cnnjax import data
from cnnjax.train.ema import config_ema, resolve_weights
from cnnjax.train.runner.config import prepare_config, resolve_config
from cnnjax.train.runner.dataset_info import info_from_config
from cnnjax.train.runner.evaluation import read_config_json
from cnnjax.train.tasks import TASKS
from cnnjax.workdir_layout import CONFIG_FILE
from experiments.cli_errors import UsageError

__all__ = ["check_task", "run_config", "saved_config", "which_weights"]

_IGNORED = ("dataset_info",)  # filled by training: a file never states it


def _without_config_file(argv: Sequence[str]) -> list[str]:
    """`argv` without `--config=FILE` / `--config FILE` (the `--config.FIELD` overrides stay)."""
    out, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if i and arg in ("--config", "-config"):
            skip = True
            continue
        if i and arg.startswith(("--config=", "-config=")):
            continue
        out.append(arg)
    return out


def saved_config(workdir: Path, argv: Sequence[str]) -> ml_collections.ConfigDict:
    """`workdir/config.json` with the `--config.FIELD=VALUE` overrides of `argv`, prepared."""
    raw = read_config_json(workdir)  # errors name the file and what is wrong with it
    base = resolve_config(_tuples(raw))  # imports the run's code before overrides name it
    argv = _without_config_file(argv)
    fv = flags.FlagValues()
    config_flags.DEFINE_config_dict("config", base, "the run's config.json", flag_values=fv,
                                    sys_argv=list(argv), accept_new_attributes=True,
                                    lock_config=False)
    try:
        fv(list(argv), known_only=True)
    except flags.Error as e:
        raise UsageError(f"an override of {Path(workdir) / CONFIG_FILE}: {e}") from e
    return prepare_config(fv.config)


def _tuples(value: Any) -> Any:
    """JSON lists -> tuples, recursively: ml_collections overrides tuple fields, not lists."""
    if isinstance(value, Mapping):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flat(item, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: list(value) if isinstance(value, tuple) else value}


def differing_fields(a: ml_collections.ConfigDict, b: ml_collections.ConfigDict) -> list[str]:
    """Dotted names of the fields whose values differ (`dataset_info` aside)."""
    fa, fb = _flat(json.loads(a.to_json())), _flat(json.loads(b.to_json()))
    return sorted(k for k in set(fa) | set(fb)
                  if fa.get(k) != fb.get(k) and k.split(".")[0] not in _IGNORED)


def run_config(fv: flags.FlagValues, argv: Sequence[str], prog: str
               ) -> ml_collections.ConfigDict:
    """The config to run, resolved and validated once (module docstring)."""
    workdir = Path(fv.workdir)
    if fv.mode == "train" or (fv["config"].present and not (workdir / CONFIG_FILE).exists()):
        return prepare_config(fv.config)
    config = saved_config(workdir, argv)  # never the default config: another model, silently
    if fv["config"].present:
        differ = differing_fields(resolve_config(fv.config), config)
        if differ:
            shown = ", ".join(differ[:8]) + (", ..." if len(differ) > 8 else "")
            print(f"{prog}: warning: --config={fv['config'].config_filename} is not this run's "
                  f"config ({shown} differ); --mode={fv.mode} uses {workdir / CONFIG_FILE} with "
                  "the --config.FIELD=VALUE overrides of the command line", file=sys.stderr)
    return config


def check_task(config: ml_collections.ConfigDict, task: str, script: str) -> None:
    """A classification script given a segmentation data set (or back) fails before any work."""
    name = config.task.name
    if name is None:
        info = info_from_config(config)
        if info is None:
            info = data.get_info(config.dataset, config.data_dir, **dict(config.dataset_options))
        name = info.task
    kind = TASKS.get(name).kind if name in TASKS else name
    if kind != task:
        other = "segment" if task == "classification" else "classify"
        raise ValueError(
            f"config.dataset={config.dataset!r} is a {name} task; experiments.{script} runs "
            f"{task}: use `python -m experiments.{other}`"
        )


def which_weights(fv: flags.FlagValues, config: Any) -> str:
    """`--weights` -> "ema" | "raw" for this run's config (a UsageError: --weights=ema on a
    run trained without EMA, or --weights with --mode=train)."""
    if fv.mode == "train":
        if fv.weights is not None:
            raise UsageError(f"--weights={fv.weights} applies to --mode=eval, predict and "
                             "export; training keeps both (config.ema_decay)")
        return "raw"
    try:
        return resolve_weights(fv.weights, config_ema(config) is not None)
    except ValueError as e:
        raise UsageError(str(e)) from e
