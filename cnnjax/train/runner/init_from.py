"""Starting a NEW run from other weights: `config.init_from` and `config.init_exclude`.

`config.init_from` is either

  - a torchvision/timm weights file (`.pth`, `.pt`, `.safetensors`, `.npz`), read through
    `cnnjax.models.from_torchvision`'s name mapping for `config.model`, or
  - another run's workdir: its best checkpoint if a validation ranked one, else its latest;
    `"WORKDIR:latest"`, `"WORKDIR:best"` or `"WORKDIR:STEP"` chooses.

`initialise(c, state, resumed=...)` is called once, by the fresh-start path of the loop: a run
that resumes from its own checkpoint never loads `init_from` (resume wins, with a log line).
Parameters and batch statistics are copied leaf by leaf into the freshly initialised state,
except

  - leaves whose "/"-joined path (without the collection, as in `optimizer.freeze`, e.g.
    "logits/kernel" or "layer4_1/bn2/mean") matches a pattern of `config.init_exclude`
    (fnmatch): they keep their fresh initialisation;
  - head leaves (top-level module `head` or `logits`) whose shape differs, e.g. a new number of
    classes: re-initialised, named in ONE log line.

Any other difference (a missing, unexpected or differently shaped leaf) is one `ValueError`
listing every key. The optimizer state is initialised again for the loaded parameters.
"""

from __future__ import annotations

import fnmatch
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import traverse_util

from cnnjax import models
from cnnjax.models.pretrained import FORMATS
from cnnjax.train.ema import fresh_ema, select_weights
from cnnjax.train.runner.components import Components, build
from cnnjax.train.runner.evaluation import load_config, restore
from cnnjax.train.state import TrainState
from cnnjax.workdir_layout import CONFIG_FILE

__all__ = ["HEAD_MODULES", "initialise", "merge_variables", "parse_init_from", "read_init_from"]

log = logging.getLogger("cnnjax.train")

HEAD_MODULES = ("head", "logits")
_WHICH = ("best", "latest")

Flat = dict[tuple[str, ...], Any]


def parse_init_from(spec: str) -> tuple[str, Path, str | int | None]:
    """("weights" | "workdir", path, which) of an `init_from` string (which: None = best if
    any, else latest). Raises ValueError when it names neither a weights file nor a workdir."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"config.init_from={spec!r}; expected a weights file or a workdir")
    if os.path.splitext(spec)[1].lower() in FORMATS:
        if not os.path.isfile(spec):
            raise ValueError(f"config.init_from={spec!r}: no such weights file")
        return "weights", Path(spec), None
    path, which = spec, None
    head, _, tail = spec.rpartition(":")
    if head and (tail in _WHICH or tail.isdigit()):
        path, which = head, int(tail) if tail.isdigit() else tail
    if not (Path(path) / CONFIG_FILE).is_file():
        raise ValueError(
            f"config.init_from={spec!r}: not a weights file ({', '.join(FORMATS)}) nor a cnnjax "
            "workdir (no config.json); for a workdir, optionally add ':best', ':latest' or "
            "':STEP'"
        )
    return "workdir", Path(path), which


def _from_workdir(path: Path, which: str | int | None) -> tuple[Flat, str]:
    source = build(load_config(path), open_data=False)  # weights only, not its data
    state, step, used = restore(source, path, "best" if which is None else which)
    weights = "ema" if state.ema is not None else "raw"
    state = select_weights(state, weights)  # a run with an EMA hands on its EMA weights
    variables = {"params": state.params, **state.model_state}
    return (traverse_util.flatten_dict(jax.device_get(variables)),
            f"{path} step {step} ({used}, {weights} weights)")


def read_init_from(spec: str, model: str, model_options: Mapping[str, Any]) -> tuple[Flat, str]:
    """(flat variables {("params", ...): array}, a description) of `init_from` for the run's
    `model` (weights files keep the file's own head; `merge_variables` decides about it)."""
    kind, path, which = parse_init_from(spec)
    if kind == "workdir":
        return _from_workdir(path, which)
    _, variables = models.from_torchvision(model, path, **dict(model_options))
    return traverse_util.flatten_dict(jax.device_get(variables)), str(path)


def _name(key: tuple[str, ...]) -> str:
    return "/".join(key[1:])  # without the collection, as optimizer.freeze's paths


def merge_variables(
    fresh: Flat, loaded: Flat, exclude: tuple[str, ...] = ()
) -> tuple[Flat, list[str]]:
    """(`fresh` with `loaded`'s leaves copied in, names of the leaves re-initialised).

    Excluded leaves (fnmatch on the "/"-joined path) keep `fresh`; head leaves whose shape
    differs are re-initialised; anything else that differs is one ValueError listing it all.
    Loaded values are cast to the fresh leaves' dtypes.
    """
    for pattern in exclude:
        if not any(fnmatch.fnmatchcase(_name(k), pattern) for k in fresh):
            raise ValueError(f"config.init_exclude pattern {pattern!r} matches no variable; "
                             f"paths look like {[_name(k) for k in list(fresh)[:4]]}")

    def excluded(key: tuple[str, ...]) -> bool:
        return any(fnmatch.fnmatchcase(_name(key), p) for p in exclude)

    def head(key: tuple[str, ...]) -> bool:
        return len(key) > 1 and key[1] in HEAD_MODULES

    merged, reinit, problems = dict(fresh), [], []
    for key, value in fresh.items():
        if excluded(key):
            continue
        if key not in loaded:
            problems.append(f"  missing {'/'.join(key)}: expected shape {np.shape(value)}")
            continue
        found = np.shape(loaded[key])
        if found == np.shape(value):
            merged[key] = np.asarray(loaded[key]).astype(np.asarray(value).dtype)
        elif head(key):
            reinit.append("/".join(key))
        else:
            problems.append(f"  shape mismatch {'/'.join(key)}: expected {np.shape(value)}, "
                            f"found {found}")
    problems += [f"  unexpected {'/'.join(k)}: found shape {np.shape(v)}"
                 for k, v in loaded.items()
                 if k not in fresh and not excluded(k) and not head(k)]
    if problems:
        raise ValueError("config.init_from does not fit the run's model (add init_exclude "
                         "patterns for what should stay freshly initialised):\n"
                         + "\n".join(problems))
    return merged, reinit


def initialise(c: Components, state: TrainState, *, resumed: bool) -> TrainState:
    """`state` (fresh, step 0) with `c.config.init_from` loaded into it; unchanged when the
    config has no `init_from` or the run `resumed` from its own checkpoint (logged)."""
    spec = c.config.get("init_from")
    if not spec:
        return state
    if resumed:
        log.warning("config.init_from=%r ignored: the run resumes from its own checkpoint", spec)
        return state
    loaded, description = read_init_from(spec, c.config.model, c.config.model_options)
    fresh = traverse_util.flatten_dict({"params": state.params, **state.model_state})
    merged, reinit = merge_variables(fresh, loaded, tuple(c.config.get("init_exclude") or ()))
    merged = {k: jax.device_put(v, fresh[k].sharding) for k, v in merged.items()}
    variables = traverse_util.unflatten_dict(merged)
    params = variables.pop("params")
    opt_shardings = jax.tree.map(lambda x: x.sharding, state.opt_state)
    opt_state = jax.jit(c.tx.init, out_shardings=opt_shardings)(params)
    # WARNING level: the scripts show no INFO, and a user must see what was loaded.
    log.warning("initialised from %s%s", description,
             f"; re-initialised (shapes differ): {', '.join(reinit)}" if reinit else "")
    ema = None if state.ema is None else jax.jit(
        fresh_ema, out_shardings=jax.tree.map(lambda x: x.sharding, state.ema))(params, variables)
    # the EMA starts from the loaded weights too, not from the random initialisation
    return state.replace(params=params, model_state=variables, opt_state=opt_state, ema=ema)
