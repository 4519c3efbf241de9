"""Exponential moving average (EMA) of the weights, kept in the train state.

With `config.ema_decay = d > 0` the train state holds `state.ema = {"params": ...,
"model_state": ...}`, a float32 copy of the parameters AND of the other variable collections
(batch-norm statistics), updated inside the compiled train step after each optimizer update:

    d_t = min(d, (1 + t) / (10 + t))           # warm-up; t = optimizer updates before this one
    ema <- ema + (1 - d_t) * (new weights - ema)     # = d_t ema + (1 - d_t) new

The warm-up is TensorFlow's `tf.train.ExponentialMovingAverage(decay, num_updates=t)` rule
(also used by big_vision): early on the average forgets its random initialisation fast
(d_0 = 0.1), and d_t reaches d = 0.999 after ~9000 updates. The update is written as a lerp
(timm's `ema.lerp_(weights, 1 - d)`), so a weight that does not change (frozen by
`optimizer.freeze` or `freeze_batch_stats`) keeps its EMA exactly, without rounding drift.

Batch statistics are averaged with the same d_t, as timm's `ModelEmaV2` averages the whole
`state_dict` (buffers included): the EMA weights are evaluated with statistics that lag the
same way. Non-floating leaves (none in the zoo) are copied.

With gradient accumulation (`optimizer.accumulate_steps = k`) the parameters change every
k-th train step only; the EMA is updated at those steps (t counts optimizer updates). A
halted or non-finite step leaves the whole state, EMA included, unchanged
(`cnnjax.train.step_bodies.train_body`). `config.ema_decay = 0` (default): no EMA in the
state, and the step computes exactly what it computed before EMA existed.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

__all__ = [
    "WEIGHTS",
    "EmaSpec",
    "check_state",
    "config_ema",
    "ema_spec",
    "fresh_ema",
    "resolve_weights",
    "select_weights",
    "update_ema",
    "warmup_decay",
]

WEIGHTS = ("ema", "raw")


@dataclasses.dataclass(frozen=True)
class EmaSpec:
    """How the train step updates `state.ema`: `decay` in (0, 1), once every `every` steps."""

    decay: float
    every: int = 1

    def __post_init__(self) -> None:
        if (isinstance(self.decay, bool) or not isinstance(self.decay, int | float)
                or not math.isfinite(self.decay) or not 0.0 < self.decay < 1.0):
            raise ValueError(f"ema decay={self.decay!r}; expected a number in (0, 1)")
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"ema every={self.every!r}; expected an int >= 1 "
                             "(optimizer.accumulate_steps)")


def ema_spec(decay: float, accumulate_steps: int = 1) -> EmaSpec | None:
    """`EmaSpec` of a config's `ema_decay` (None when it is 0: EMA off)."""
    if decay == 0:
        return None
    return EmaSpec(float(decay), int(accumulate_steps))


def config_ema(config: Any) -> EmaSpec | None:
    """The `EmaSpec` of a run config (`ema_decay`, `optimizer.accumulate_steps`), or None."""
    return ema_spec(float(config.get("ema_decay", 0.0) or 0.0),
                    int(config.optimizer.accumulate_steps))


def fresh_ema(params: Any, model_state: Any) -> dict[str, Any]:
    """The EMA at step 0: a copy of the weights (new buffers: the state is donated whole)."""
    return {"params": jax.tree.map(jnp.copy, params),
            "model_state": jax.tree.map(jnp.copy, model_state)}


def warmup_decay(decay: float, updates: jax.Array) -> jax.Array:
    """float32 `min(decay, (1 + t) / (10 + t))` for `t = updates` (optimizer updates so far)."""
    t = jnp.asarray(updates, jnp.float32)
    return jnp.minimum(jnp.float32(decay), (1.0 + t) / (10.0 + t))


def _average(d: jax.Array, old: jax.Array, new: jax.Array) -> jax.Array:
    if not jnp.issubdtype(old.dtype, jnp.floating):
        return new
    step = (1 - d).astype(old.dtype)
    return old + step * (new.astype(old.dtype) - old)  # a leaf that stays put stays exact


def update_ema(ema: dict[str, Any], params: Any, model_state: Any, step: jax.Array,
               spec: EmaSpec) -> dict[str, Any]:
    """`ema` after the train step that took the state from `step` to `step + 1`, to the new
    `params` and `model_state`. Pure; traced inside the step (see the module docstring)."""
    d = warmup_decay(spec.decay, step // spec.every)
    new = {"params": params, "model_state": model_state}
    averaged = jax.tree.map(lambda o, n: _average(d, o, n), ema, new)
    if spec.every == 1:
        return averaged
    due = (step + 1) % spec.every == 0
    return jax.tree.map(lambda a, o: jnp.where(due, a, o), averaged, ema)


def check_state(ema: Any, spec: EmaSpec | None) -> None:
    """The state and the step must agree on whether there is an EMA (trace time)."""
    if spec is not None and ema is None:
        raise ValueError("the train step updates an EMA (ema_decay > 0) but the state has none: "
                         "create it with create_train_state(..., ema=True)")
    if spec is None and ema is not None:
        raise ValueError("the state holds an EMA but the train step has no ema_decay: pass "
                         "make_train_step(..., ema=EmaSpec(decay))")


def resolve_weights(weights: str | None, has_ema: bool) -> str:
    """`--weights` value -> "ema" or "raw". None: "ema" when the run has an EMA, else "raw".

    Raises ValueError for another value, or for "ema" on a run trained without EMA."""
    if weights is None:
        return "ema" if has_ema else "raw"
    if weights not in WEIGHTS:
        raise ValueError(f"--weights={weights!r}; expected one of {WEIGHTS}")
    if weights == "ema" and not has_ema:
        raise ValueError("--weights=ema, but this run was trained without an EMA of its "
                         "weights (config.ema_decay=0); use --weights=raw or leave it out")
    return weights


def select_weights(state: Any, weights: str | None = None) -> Any:
    """`state` whose `params`/`model_state` are its EMA ("ema") or its own ("raw").

    `weights=None`: the EMA when the state has one. What evaluation, prediction, plots and
    export read; the returned state shares the arrays of `state` (nothing is copied)."""
    has_ema = getattr(state, "ema", None) is not None
    if resolve_weights(weights, has_ema) == "raw":
        return state
    return state.replace(params=state.ema["params"], model_state=state.ema["model_state"])
