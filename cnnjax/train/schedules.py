"""Learning-rate schedules, and reading an optimizer config (see `cnnjax.train.optim`).

`make_schedule(cfg, total_updates)` maps an optimizer update count to a learning rate;
`as_dict(cfg)` turns a flat optimizer config or a run config's `optimizer` and `schedule`
groups into one checked dict of the fields listed in `cnnjax.train.optim`.

Schedules are a registry (`SCHEDULE_REGISTRY`): one decorated function each, here or in a
user's file listed in `config.imports`, `build(cfg, lr, warmup, total) -> schedule`; the
linear warm-up from 0 over `warmup_steps` is added around it unless the schedule has its own:

    @register_schedule("linear", needs_total=True)
    def linear(cfg, lr, warmup, total):
        return optax.linear_schedule(lr, 0.0, total - warmup, transition_begin=warmup)
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from cnnjax.registry import NameList, Registry, origin_of

__all__ = [
    "SCHEDULES",
    "SCHEDULE_REGISTRY",
    "Schedule",
    "ScheduleEntry",
    "as_dict",
    "config_number",
    "config_steps",
    "make_schedule",
    "register_schedule",
]


_FIELDS = frozenset(
    {
        "name", "learning_rate", "momentum", "nesterov", "b1", "b2", "eps",
        "weight_decay", "grad_clip_norm", "accumulate_steps", "freeze", "lr_multipliers",
        "schedule", "warmup_steps", "total_steps", "final_learning_rate",
        "boundaries", "step_size", "decay_factor", "pct_start", "div_factor",
        "final_div_factor", "trust_coefficient",
    }
)  # fmt: skip

Schedule = Callable[[Any], jax.Array]


@dataclasses.dataclass(frozen=True)
class ScheduleEntry:
    """A registered schedule: `build(cfg, lr, warmup, total) -> schedule` and what it needs.

    needs_total: it needs the run's length (`total` is never None then, warmup < total).
    needs_warmup: it needs warmup_steps >= 1. own_warmup: `build` handles warm-up itself.
    """

    build: Callable[[Mapping[str, Any], float, int, int | None], Schedule]
    needs_total: bool = False
    needs_warmup: bool = False
    own_warmup: bool = False

    @property
    def registry_origin(self) -> tuple[str, str] | None:
        return origin_of(self.build)


SCHEDULE_REGISTRY: Registry[ScheduleEntry] = Registry("schedule")
SCHEDULES: Sequence[str] = NameList(SCHEDULE_REGISTRY)
"""The registered schedule names (a live view: later registrations count)."""


def register_schedule(name: str, *, needs_total: bool = False, needs_warmup: bool = False,
                      own_warmup: bool = False) -> Callable[[Callable], Callable]:
    """Decorator registering `build(cfg, lr, warmup, total) -> schedule` as `name`."""

    def add(build: Callable) -> Callable:
        SCHEDULE_REGISTRY.register(name)(
            ScheduleEntry(build, needs_total, needs_warmup, own_warmup))
        return build

    return add


def _from_run_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A run config's `optimizer` and `schedule` groups as one flat config (None = default)."""
    flat = {k: v for k, v in dict(cfg["optimizer"]).items() if v is not None}
    schedule = {k: v for k, v in dict(cfg["schedule"]).items() if v is not None}
    if "name" in schedule:
        flat["schedule"] = schedule.pop("name")
    return {**flat, **schedule}


def as_dict(cfg: Any) -> dict[str, Any]:
    """`cfg` as a flat dict of `_FIELDS`: an optimizer config, or a whole run config
    (`cnnjax.train.runner.config`), whose `optimizer` and `schedule` groups are read."""
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


def config_number(cfg: Mapping[str, Any], key: str, default: Any, *, low: float = 0.0) -> Any:
    value = cfg.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value < low:
        raise ValueError(f"optimizer config {key}={value!r}; expected a number >= {low}")
    return value


def config_steps(cfg: Mapping[str, Any], key: str, default: int | None) -> int | None:
    value = cfg.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"optimizer config {key}={value!r}; expected a non-negative int")
    return int(value)


def _check_length(name: str, entry: ScheduleEntry, warmup: int, total: int | None) -> None:
    if entry.needs_total:
        if total is None:
            raise ValueError(
                f"schedule={name!r} needs total_steps (in the config or make_schedule's argument)"
            )
        if warmup >= total:
            raise ValueError(f"warmup_steps={warmup} must be smaller than total_steps={total}")
    if entry.needs_warmup and warmup < 1:
        raise ValueError(f"schedule={name!r} needs warmup_steps >= 1")


@register_schedule("constant")
def _constant(cfg: Mapping[str, Any], lr: float, warmup: int, total: int | None) -> Schedule:
    return optax.constant_schedule(lr)


@register_schedule("step")
def _step_schedule(cfg: Mapping[str, Any], lr: float, warmup: int, total: int | None
                   ) -> Schedule:
    factor = float(config_number(cfg, "decay_factor", 0.1))
    boundaries = cfg.get("boundaries")
    step_size = config_steps(cfg, "step_size", None)
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
    return optax.piecewise_constant_schedule(lr, {b: factor for b in boundaries})


@register_schedule("one_cycle", needs_total=True, own_warmup=True)
def _one_cycle(cfg: Mapping[str, Any], lr: float, warmup: int, total: int) -> Schedule:
    return optax.cosine_onecycle_schedule(
        transition_steps=total,
        peak_value=lr,
        pct_start=float(config_number(cfg, "pct_start", 0.3)),
        div_factor=float(config_number(cfg, "div_factor", 25.0)),
        final_div_factor=float(config_number(cfg, "final_div_factor", 1e4)),
    )


@register_schedule("cosine", needs_total=True)
@register_schedule("warmup_cosine", needs_total=True, needs_warmup=True)
def _cosine(cfg: Mapping[str, Any], lr: float, warmup: int, total: int) -> Schedule:
    final = float(config_number(cfg, "final_learning_rate", 0.0))
    alpha = final / lr if lr > 0 else 0.0
    cosine = optax.cosine_decay_schedule(lr, decay_steps=total - warmup, alpha=alpha)

    def base(step: Any) -> jax.Array:
        return cosine(jnp.maximum(step - warmup, 0))

    return base


def make_schedule(cfg: Any, total_steps: int | None = None) -> Schedule:
    """The learning-rate schedule of `cfg`: optimizer update count -> learning rate.

    `total_steps` (number of optimizer updates) overrides `cfg.total_steps`; only the
    cosine and one-cycle schedules need it.
    """
    cfg = as_dict(cfg)
    name = cfg.get("schedule", "constant")
    if not isinstance(name, str) or name not in SCHEDULE_REGISTRY:
        raise ValueError(f"schedule={name!r}; expected one of {tuple(SCHEDULES)}")
    entry = SCHEDULE_REGISTRY.get(name)
    if "learning_rate" not in cfg:
        raise ValueError("optimizer config has no learning_rate")
    lr = float(config_number(cfg, "learning_rate", None))
    warmup = config_steps(cfg, "warmup_steps", 0)
    total = total_steps if total_steps is not None else config_steps(cfg, "total_steps", None)
    if total is not None and (
        isinstance(total, bool) or not isinstance(total, numbers.Integral) or total < 1
    ):
        raise ValueError(f"total_steps={total!r}; expected a positive int")
    total = None if total is None else int(total)
    _check_length(name, entry, warmup, total)
    base = entry.build(cfg, lr, warmup, total)
    if warmup == 0 or entry.own_warmup:
        return base

    def warmed(step: Any) -> jax.Array:
        step = jnp.asarray(step)
        return jnp.where(step < warmup, lr * step / warmup, base(step))

    return warmed
