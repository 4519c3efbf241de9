"""Optimizers and learning-rate schedules from a config, through Optax.

A config is a run config (`cnnjax.train.config.default_config()`: its `optimizer` and
`schedule` groups are read, the schedule's `name` being the `schedule` field below), or a flat
dict or `ml_collections.ConfigDict` with these fields (defaults in
brackets; unknown fields are an error, so a typo cannot pass silently):

    name              sgd | momentum | nesterov | adam | adamw | lamb | lars
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
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "lamb", "lars")
SCHEDULES = ("constant", "cosine", "warmup_cosine", "step", "one_cycle")

_FIELDS = frozenset(
    {
        "name", "learning_rate", "momentum", "nesterov", "b1", "b2", "eps",
        "weight_decay", "grad_clip_norm", "accumulate_steps", "freeze",
        "schedule", "warmup_steps", "total_steps", "final_learning_rate",
        "boundaries", "step_size", "decay_factor", "pct_start", "div_factor",
        "final_div_factor", "trust_coefficient",
    }
)  # fmt: skip

Schedule = Callable[[Any], jax.Array]


def _from_run_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A run config's `optimizer` and `schedule` groups as one flat config (None = default)."""
    flat = {k: v for k, v in dict(cfg["optimizer"]).items() if v is not None}
    schedule = {k: v for k, v in dict(cfg["schedule"]).items() if v is not None}
    if "name" in schedule:
        flat["schedule"] = schedule.pop("name")
    return {**flat, **schedule}


def _as_dict(cfg: Any) -> dict[str, Any]:
    """`cfg` as a flat dict of `_FIELDS`: an optimizer config, or a whole run config
    (`cnnjax.train.config`), whose `optimizer` and `schedule` groups are read."""
    if hasattr(cfg, "to_dict"):
        cfg = cfg.to_dict()
    if not isinstance(cfg, Mapping):
        raise TypeError(
            f"optimizer config {cfg!r}; expected a dict or an ml_collections.ConfigDict"
        )
    cfg = dict(cfg)
    if isinstance(cfg.get("optimizer"), Mapping) and isinstance(cfg.get("schedule"), Mapping):
        cfg = _from_run_config(cfg)
    unknown = sorted(set(cfg) - _FIELDS)
    if unknown:
        raise ValueError(
            f"unknown optimizer config field(s) {unknown}; valid fields are {sorted(_FIELDS)}"
        )
    return cfg


def _number(cfg: Mapping[str, Any], key: str, default: Any, *, low: float = 0.0) -> Any:
    value = cfg.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value < low:
        raise ValueError(f"optimizer config {key}={value!r}; expected a number >= {low}")
    return value


def _steps(cfg: Mapping[str, Any], key: str, default: int | None) -> int | None:
    value = cfg.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"optimizer config {key}={value!r}; expected a non-negative int")
    return int(value)


# --------------------------------------------------------------------------- schedules


def make_schedule(cfg: Any, total_steps: int | None = None) -> Schedule:
    """The learning-rate schedule of `cfg`: optimizer update count -> learning rate.

    `total_steps` (number of optimizer updates) overrides `cfg.total_steps`; only the
    cosine and one-cycle schedules need it.
    """
    cfg = _as_dict(cfg)
    name = cfg.get("schedule", "constant")
    if name not in SCHEDULES:
        raise ValueError(f"schedule={name!r}; expected one of {SCHEDULES}")
    if "learning_rate" not in cfg:
        raise ValueError("optimizer config has no learning_rate")
    lr = float(_number(cfg, "learning_rate", None))
    warmup = _steps(cfg, "warmup_steps", 0)
    total = total_steps if total_steps is not None else _steps(cfg, "total_steps", None)
    if total is not None and (
        isinstance(total, bool) or not isinstance(total, numbers.Integral) or total < 1
    ):
        raise ValueError(f"total_steps={total!r}; expected a positive int")
    total = None if total is None else int(total)
    if name in ("cosine", "warmup_cosine", "one_cycle"):
        if total is None:
            raise ValueError(
                f"schedule={name!r} needs total_steps (in the config or make_schedule's argument)"
            )
        if warmup >= total:
            raise ValueError(f"warmup_steps={warmup} must be smaller than total_steps={total}")
    if name == "warmup_cosine" and warmup < 1:
        raise ValueError("schedule='warmup_cosine' needs warmup_steps >= 1")

    if name == "one_cycle":
        return optax.cosine_onecycle_schedule(
            transition_steps=total,
            peak_value=lr,
            pct_start=float(_number(cfg, "pct_start", 0.3)),
            div_factor=float(_number(cfg, "div_factor", 25.0)),
            final_div_factor=float(_number(cfg, "final_div_factor", 1e4)),
        )
    if name == "constant":
        base: Schedule = optax.constant_schedule(lr)
    elif name in ("cosine", "warmup_cosine"):
        final = float(_number(cfg, "final_learning_rate", 0.0))
        alpha = final / lr if lr > 0 else 0.0
        cosine = optax.cosine_decay_schedule(lr, decay_steps=total - warmup, alpha=alpha)

        def base(step: Any) -> jax.Array:
            return cosine(jnp.maximum(step - warmup, 0))
    else:  # step
        factor = float(_number(cfg, "decay_factor", 0.1))
        boundaries = cfg.get("boundaries")
        step_size = _steps(cfg, "step_size", None)
        if (boundaries is None) == (step_size is None):
            raise ValueError("schedule='step' needs exactly one of boundaries or step_size")
        if step_size is not None:
            if step_size < 1 or total is None:
                raise ValueError(
                    "schedule='step' with step_size needs step_size >= 1 and total_steps"
                )
            boundaries = list(range(step_size, total, step_size))
        boundaries = list(boundaries)
        if any(not isinstance(b, int) or b < 1 for b in boundaries) or boundaries != sorted(
            set(boundaries)
        ):
            raise ValueError(f"boundaries={boundaries!r}; expected increasing positive ints")
        base = optax.piecewise_constant_schedule(lr, {b: factor for b in boundaries})

    if warmup == 0:
        return base

    def warmed(step: Any) -> jax.Array:
        step = jnp.asarray(step)
        return jnp.where(step < warmup, lr * step / warmup, base(step))

    return warmed


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


def decay_mask(params: Any) -> Any:
    """True for parameters that get weight decay: ndim > 1 (kernels), not biases/scales."""
    return jax.tree.map(lambda p: jnp.ndim(p) > 1, params)


def freeze_labels(params: Any, patterns: tuple[str, ...]) -> Any:
    """Label each parameter "frozen" or "trainable"; every pattern must match some path."""
    names = jax.tree_util.tree_map_with_path(lambda path, _: path_name(path), params)
    flat = jax.tree.leaves(names)
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in flat):
            raise ValueError(
                f"freeze pattern {pattern!r} matches no parameter; parameter paths look "
                f"like {flat[:4]}"
            )
    return jax.tree.map(
        lambda name: (
            "frozen" if any(fnmatch.fnmatchcase(name, p) for p in patterns) else "trainable"
        ),
        names,
    )


# --------------------------------------------------------------------------- optimizers


def make_optimizer(cfg: Any, total_steps: int | None = None) -> optax.GradientTransformation:
    """The Optax transformation described by `cfg` (see the module docstring).

    Order: MultiSteps(multi_transform(trainable: clip -> [L2] -> optimizer, frozen: zero)).
    `total_steps` counts optimizer updates (train steps // accumulate_steps).
    """
    cfg = _as_dict(cfg)
    name = cfg.get("name")
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer name={name!r}; expected one of {OPTIMIZERS}")
    schedule = make_schedule(cfg, total_steps)
    wd = float(_number(cfg, "weight_decay", 0.0))
    default_momentum = 0.0 if name == "sgd" else 0.9
    momentum = float(_number(cfg, "momentum", default_momentum))
    nesterov = cfg.get("nesterov", name == "nesterov")
    if not isinstance(nesterov, bool):
        raise ValueError(f"optimizer config nesterov={nesterov!r}; expected a bool")
    b1 = float(_number(cfg, "b1", 0.9))
    b2 = float(_number(cfg, "b2", 0.999))
    eps = float(_number(cfg, "eps", 1e-6 if name == "lamb" else 1e-8))

    parts: list[optax.GradientTransformation] = []
    clip = _number(cfg, "grad_clip_norm", None)
    if clip is not None:
        parts.append(optax.clip_by_global_norm(float(clip)))
    if name in ("sgd", "momentum", "nesterov", "adam") and wd > 0:
        parts.append(optax.add_decayed_weights(wd, mask=decay_mask))
    if name in ("sgd", "momentum", "nesterov"):
        if nesterov and momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        parts.append(optax.sgd(schedule, momentum=momentum or None, nesterov=nesterov))
    elif name == "adam":
        parts.append(optax.adam(schedule, b1=b1, b2=b2, eps=eps))
    elif name == "adamw":
        parts.append(optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=wd, mask=decay_mask))
    elif name == "lamb":
        parts.append(optax.lamb(schedule, b1=b1, b2=b2, eps=eps, weight_decay=wd, mask=decay_mask))
    else:  # lars
        parts.append(
            optax.lars(
                schedule,
                weight_decay=wd,
                weight_decay_mask=decay_mask,
                trust_ratio_mask=decay_mask,
                trust_coefficient=float(_number(cfg, "trust_coefficient", 0.001)),
                momentum=momentum,
                nesterov=nesterov,
            )
        )
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

    k = _steps(cfg, "accumulate_steps", 1)
    if k < 1:
        raise ValueError(f"accumulate_steps={k}; expected an int >= 1")
    if k > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=k).gradient_transformation()
    return tx
