"""The search's command line: `--search=optuna --trials=N --space=FIELD=LOW:HIGH[:log]` and
the sampler/pruner flags (`experiments.sweep.search` runs the study)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from experiments.cli_errors import UsageError


@dataclasses.dataclass(frozen=True)
class Dim:
    """One searched config field: a float (log-uniform or uniform) or an integer range."""

    field: str
    low: float
    high: float
    log: bool
    integer: bool


def _number(text: str) -> float | int:
    text = text.strip()
    return int(text) if text.lstrip("+-").isdigit() else float(text)


def parse_space(specs: Sequence[str]) -> list[Dim]:
    """['optimizer.learning_rate=1e-4:1e-1:log', 'batch_size=8:64'] -> Dims (integers when
    both bounds are written as integers)."""
    if not specs:
        raise UsageError("--search=optuna needs --space=FIELD=LOW:HIGH[:log] (at least one)")
    dims: list[Dim] = []
    for spec in specs:
        field, _, rng = spec.partition("=")
        field = field.strip().removeprefix("config.")
        parts = rng.split(":")
        try:
            low, high = _number(parts[0]), _number(parts[1])
        except (ValueError, IndexError):
            low = high = math.nan
        scale = parts[2] if len(parts) == 3 else "linear" if len(parts) == 2 else "?"
        if (not field or math.isnan(low) or scale not in ("log", "linear")
                or not low < high or (scale == "log" and low <= 0)):
            raise UsageError(f"--space={spec!r}; expected FIELD=LOW:HIGH or FIELD=LOW:HIGH:log "
                             "with LOW < HIGH (and LOW > 0 for log), e.g. "
                             "--space=optimizer.learning_rate=1e-4:1e-1:log")
        if field in {d.field for d in dims} or field == "seed":
            raise UsageError(f"--space field {field!r} is given twice (or is seed)")
        dims.append(Dim(field, float(low), float(high), scale == "log",
                        isinstance(low, int) and isinstance(high, int)))
    return dims


def define_flags(fv: Any) -> None:
    """The --search flags of `experiments.sweep`."""
    from absl import flags

    flags.DEFINE_enum("search", "grid", ["grid", "optuna"], "grid: every --grid combination x "
                      "--seeds; optuna: an Optuna study of --trials trials over --space",
                      flag_values=fv)
    flags.DEFINE_integer("trials", None, "--search=optuna: the study's number of trials (a "
                         "rerun with a larger N adds trials)", lower_bound=1, flag_values=fv)
    flags.DEFINE_multi_string("space", [], "--search=optuna: FIELD=LOW:HIGH[:log], a searched "
                              "config field (integers if both bounds are; repeat for more)",
                              flag_values=fv)
    flags.DEFINE_enum("sampler", "tpe", ["tpe", "random"], "--search=optuna: Optuna sampler",
                      flag_values=fv)
    flags.DEFINE_integer("search_seed", 0, "--search=optuna: sampler seed (trial n uses "
                         "seed + n)", lower_bound=0, flag_values=fv)
    flags.DEFINE_integer("startup_trials", 4, "--search=optuna: random trials before TPE "
                         "models the results, and trials before pruning starts", lower_bound=0,
                         flag_values=fv)
    flags.DEFINE_string("objective", "loss", "--search=optuna: the validation metric optimised "
                        "(a key of summary.json's val)", flag_values=fv)
    flags.DEFINE_enum("direction", None, ["minimize", "maximize"], "--search=optuna: default "
                      "minimize for a metric named *loss*, else maximize", flag_values=fv)
    flags.DEFINE_bool("prune", True, "--search=optuna: stop trials whose validation metric "
                      "falls below the median of earlier trials at the same step",
                      flag_values=fv)
