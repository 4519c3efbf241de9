"""Optimizers and learning-rate schedules from a config, through Optax.

A config is a run config (`cnnjax.train.runner.config.default_config()`: its `optimizer` and
`schedule` groups are read, the schedule's `name` being the `schedule` field below), or a flat
dict or `ml_collections.ConfigDict` with these fields (defaults in
brackets; unknown fields are an error, so a typo cannot pass silently):

    name              sgd | momentum | nesterov | adam | adamw | lamb | lars, or any name
                      registered in `cnnjax.train.optimizers` (one function each)
    learning_rate     peak learning rate (required)
    momentum          [0 for sgd, 0.9 for momentum, nesterov and lars]
    nesterov          [False; True for "nesterov"]
    b1, b2, eps       Adam-family moments [0.9, 0.999, 1e-8 (1e-6 for lamb)]
    weight_decay      [0]; applied only to parameters with ndim > 1 (not to biases or
                      norm scales). sgd/momentum/nesterov/adam: L2 added to the gradient
                      (PyTorch's `weight_decay`); adamw/lamb/lars: decoupled.
    grad_clip_norm    [None] clip the global gradient norm (of the trainable parameters)
    accumulate_steps  [1] average gradients over k calls, update every k-th (optax.MultiSteps)
    freeze            [()] glob patterns (fnmatch) of "/"-joined parameter paths, such as
                      "backbone/*" or "*/BatchNorm_*/*", that get zero updates
    lr_multipliers    [()] per-group learning rates: (pattern, multiplier) pairs (or an
                      ordered mapping), e.g. (("logits/*", 1.0), ("*", 0.1)); each parameter
                      takes the multiplier of the FIRST pattern its path matches (1.0 if none)
                      and its updates are scaled by it (after the optimizer, so clipping stays
                      global and the result equals that learning rate times the multiplier)
    schedule          constant | cosine | warmup_cosine | step | one_cycle  [constant]
    warmup_steps      [0] linear warm-up from 0 (constant, cosine, warmup_cosine, step)
    total_steps       [None] length of the schedule, if not given to make_schedule
    final_learning_rate  [0] end value of cosine schedules
    boundaries        step schedule: steps at which the rate is multiplied by decay_factor
    step_size         step schedule: or every step_size steps
    decay_factor      [0.1] step schedule factor
    pct_start, div_factor, final_div_factor   one_cycle [0.3, 25, 1e4]
    trust_coefficient [0.001] lars

All step counts (total_steps, warmup_steps, boundaries, step_size) count optimizer
*updates*. With `accumulate_steps = k` one update happens every k train steps, so the
learning rate at train step s is `make_schedule(cfg, total_updates)(s // k)`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any

import jax
import optax

from cnnjax.train.optimizers import OPTIMIZER_REGISTRY, OPTIMIZERS, decay_mask
from cnnjax.train.schedules import (
    SCHEDULES,
    as_dict,
    config_number,
    config_steps,
    make_schedule,
)

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "decay_mask",
    "freeze_labels",
    "lr_multiplier_labels",
    "make_optimizer",
    "make_schedule",
    "path_name",
]


# --------------------------------------------------------------------------- masks


def path_name(path: tuple[Any, ...]) -> str:
    """A pytree key path as "a/b/c" (dict keys, attribute names, sequence indices)."""
    parts = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    return "/".join(parts)


def matched_path_names(params: Any, patterns: tuple[str, ...], option: str) -> Any:
    """The tree of "/"-joined parameter paths; ValueError naming `option` when one of the
    fnmatch `patterns` matches no path (a typo would otherwise pass silently)."""
    names = jax.tree_util.tree_map_with_path(lambda path, _: path_name(path), params)
    flat = jax.tree.leaves(names)
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in flat):
            raise ValueError(
                f"{option} pattern {pattern!r} matches no parameter; parameter paths look "
                f"like {flat[:4]}"
            )
    return names


def freeze_labels(params: Any, patterns: tuple[str, ...]) -> Any:
    """Label each parameter "frozen" or "trainable"; every pattern must match some path."""
    names = matched_path_names(params, patterns, "freeze")
    return jax.tree.map(
        lambda name: (
            "frozen" if any(fnmatch.fnmatchcase(name, p) for p in patterns) else "trainable"
        ),
        names,
    )


def lr_multiplier_labels(params: Any, patterns: tuple[str, ...]) -> Any:
    """Label each parameter with the index (as a str) of the first pattern its path matches,
    or "default"; every pattern must match some path."""
    names = matched_path_names(params, patterns, "lr_multipliers")

    def label(name: str) -> str:
        return next((str(i) for i, p in enumerate(patterns) if fnmatch.fnmatchcase(name, p)),
                    "default")

    return jax.tree.map(label, names)


def _lr_multipliers(value: Any) -> tuple[tuple[str, float], ...]:
    """(pattern, multiplier) pairs of `lr_multipliers` (a mapping or a sequence of pairs)."""
    pairs = list(value.items()) if isinstance(value, Mapping) else list(value or ())
    expected = "(pattern, multiplier >= 0) pairs or a mapping pattern -> multiplier"
    out = []
    for pair in pairs:
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise ValueError(f"lr_multipliers={value!r}; expected {expected}")
        pattern, mult = pair
        if (not isinstance(pattern, str) or isinstance(mult, bool)
                or not isinstance(mult, int | float) or mult < 0):
            raise ValueError(f"lr_multipliers entry {pair!r}; expected {expected}")
        out.append((pattern, float(mult)))
    return tuple(out)


# --------------------------------------------------------------------------- optimizers


def _check_shared_fields(cfg: Mapping[str, Any]) -> None:
    """Every optimizer's config is checked the same way, whichever fields it reads."""
    for key in ("weight_decay", "momentum", "b1", "b2", "eps", "trust_coefficient"):
        config_number(cfg, key, None)
    if not isinstance(cfg.get("nesterov", False), bool):
        raise ValueError(f"optimizer config nesterov={cfg.get('nesterov')!r}; expected a bool")


def make_optimizer(cfg: Any, total_steps: int | None = None) -> optax.GradientTransformation:
    """The Optax transformation described by `cfg` (see the module docstring).

    Order: MultiSteps(multi_transform(trainable: clip -> [L2] -> optimizer -> [lr multipliers],
    frozen: zero)).
    `total_steps` counts optimizer updates (train steps // accumulate_steps).
    """
    cfg = as_dict(cfg)
    name = cfg.get("name")
    if name not in OPTIMIZER_REGISTRY:
        raise ValueError(f"optimizer name={name!r}; expected one of {tuple(OPTIMIZERS)}")
    _check_shared_fields(cfg)
    parts: list[optax.GradientTransformation] = []
    clip = config_number(cfg, "grad_clip_norm", None)
    if clip is not None:
        parts.append(optax.clip_by_global_norm(float(clip)))
    parts += OPTIMIZER_REGISTRY.get(name)(cfg, make_schedule(cfg, total_steps))
    multipliers = _lr_multipliers(cfg.get("lr_multipliers"))
    if multipliers:
        patterns = tuple(p for p, _ in multipliers)
        scales = {str(i): optax.scale(m) for i, (_, m) in enumerate(multipliers)}
        scales["default"] = optax.identity()
        parts.append(optax.multi_transform(
            scales, lambda params: lr_multiplier_labels(params, patterns)))
    tx = optax.chain(*parts) if len(parts) > 1 else parts[0]

    freeze = cfg.get("freeze") or ()
    if isinstance(freeze, str):
        freeze = (freeze,)
    freeze = tuple(freeze)
    if any(not isinstance(p, str) for p in freeze):
        raise ValueError(f"freeze={freeze!r}; expected glob pattern strings")
    if freeze:
        tx = optax.multi_transform(
            {"trainable": tx, "frozen": optax.set_to_zero()},
            lambda params: freeze_labels(params, freeze),
        )

    k = config_steps(cfg, "accumulate_steps", 1)
    if k < 1:
        raise ValueError(f"accumulate_steps={k}; expected an int >= 1")
    if k > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=k).gradient_transformation()
    return tx
