"""The named optimizers of `optimizer.name`: one registry entry each (`OPTIMIZER_REGISTRY`).

An entry is `build(cfg, schedule) -> [optax transformations]`, where `cfg` is the flat
optimizer config (`cnnjax.train.optim`'s fields: learning_rate, momentum, b1, b2, eps,
weight_decay, ...) and `schedule` the learning-rate schedule; `make_optimizer` wraps the list
with gradient clipping, per-group learning rates, freezing and accumulation, which every
optimizer shares. Adding one is one decorated function, here or in a user's file listed in
`config.imports`:

    @register_optimizer("sgd_l1")
    def sgd_l1(cfg, schedule):
        return [optax.add_decayed_weights(...), optax.sgd(schedule)]

Weight decay skips biases and norm scales (`decay_mask`): L2 added to the gradient for
sgd/momentum/nesterov/adam (PyTorch's `weight_decay`), decoupled for adamw/lamb/lars.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from cnnjax.registry import NameList, Registry
from cnnjax.train.schedules import Schedule, config_number

__all__ = ["OPTIMIZERS", "OPTIMIZER_REGISTRY", "decay_mask", "register_optimizer"]

Build = Callable[[Mapping[str, Any], Schedule], list[optax.GradientTransformation]]

OPTIMIZER_REGISTRY: Registry[Build] = Registry("optimizer")
OPTIMIZERS: Sequence[str] = NameList(OPTIMIZER_REGISTRY)
"""The registered optimizer names (a live view: later registrations count)."""


def register_optimizer(name: str) -> Callable[[Build], Build]:
    """Decorator registering `build(cfg, schedule) -> [transformations]` as `name`."""
    return OPTIMIZER_REGISTRY.register(name)


def decay_mask(params: Any) -> Any:
    """True for parameters that get weight decay: ndim > 1 (kernels), not biases/scales."""
    return jax.tree.map(lambda p: jnp.ndim(p) > 1, params)


def _wd(cfg: Mapping[str, Any]) -> float:
    return float(config_number(cfg, "weight_decay", 0.0))


def _adam_moments(cfg: Mapping[str, Any], eps: float = 1e-8) -> dict[str, float]:
    return {"b1": float(config_number(cfg, "b1", 0.9)),
            "b2": float(config_number(cfg, "b2", 0.999)),
            "eps": float(config_number(cfg, "eps", eps))}


def _momentum(cfg: Mapping[str, Any], default: float, nesterov_default: bool
              ) -> tuple[float, bool]:
    momentum = float(config_number(cfg, "momentum", default))
    nesterov = cfg.get("nesterov", nesterov_default)
    if not isinstance(nesterov, bool):
        raise ValueError(f"optimizer config nesterov={nesterov!r}; expected a bool")
    return momentum, nesterov


def _l2(cfg: Mapping[str, Any]) -> list[optax.GradientTransformation]:
    """Coupled weight decay (added to the gradient), when weight_decay > 0."""
    wd = _wd(cfg)
    return [optax.add_decayed_weights(wd, mask=decay_mask)] if wd > 0 else []


def _sgd_family(default_momentum: float, nesterov_default: bool) -> Build:
    def build(cfg: Mapping[str, Any], schedule: Schedule) -> list[optax.GradientTransformation]:
        momentum, nesterov = _momentum(cfg, default_momentum, nesterov_default)
        if nesterov and momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        return [*_l2(cfg), optax.sgd(schedule, momentum=momentum or None, nesterov=nesterov)]

    return build


register_optimizer("sgd")(_sgd_family(0.0, False))
register_optimizer("momentum")(_sgd_family(0.9, False))
register_optimizer("nesterov")(_sgd_family(0.9, True))


@register_optimizer("adam")
def _adam(cfg: Mapping[str, Any], schedule: Schedule) -> list[optax.GradientTransformation]:
    return [*_l2(cfg), optax.adam(schedule, **_adam_moments(cfg))]


@register_optimizer("adamw")
def _adamw(cfg: Mapping[str, Any], schedule: Schedule) -> list[optax.GradientTransformation]:
    return [optax.adamw(schedule, **_adam_moments(cfg), weight_decay=_wd(cfg), mask=decay_mask)]


@register_optimizer("lamb")
def _lamb(cfg: Mapping[str, Any], schedule: Schedule) -> list[optax.GradientTransformation]:
    return [optax.lamb(schedule, **_adam_moments(cfg, eps=1e-6), weight_decay=_wd(cfg),
                       mask=decay_mask)]


@register_optimizer("lars")
def _lars(cfg: Mapping[str, Any], schedule: Schedule) -> list[optax.GradientTransformation]:
    momentum, nesterov = _momentum(cfg, 0.9, False)
    return [optax.lars(
        schedule, weight_decay=_wd(cfg), weight_decay_mask=decay_mask,
        trust_ratio_mask=decay_mask,
        trust_coefficient=float(config_number(cfg, "trust_coefficient", 0.001)),
        momentum=momentum, nesterov=nesterov,
    )]
