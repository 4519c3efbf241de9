"""The bodies of the train and eval steps: one optimizer step and one evaluation of a batch.

Written once for both kinds of code that `cnnjax.train.steps` compiles: global code under
`jax.jit` (`axis=None`: XLA inserts the collectives) and per-device code under
`jax.shard_map`/`jax.pmap` (`axis="data"`: sums are `lax.psum`med explicitly). See
`cnnjax.train.steps` for the strategies, metrics and guarantees.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax import lax

from cnnjax.train.ema import EmaSpec, update_ema
from cnnjax.train.ema import check_state as check_ema_state
from cnnjax.train.optim import path_name
from cnnjax.train.state import TrainState
from cnnjax.train.tasks import Task, combine_loss_terms, valid_weights

__all__ = ["PRECISIONS", "Metrics", "dropout_key", "eval_body", "keep_frozen_stats",
           "prepare_model", "train_body"]

PRECISIONS = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

Metrics = dict[str, tuple[jax.Array, jax.Array]]


def _fields(model: nn.Module) -> set[str]:
    return {f.name for f in dataclasses.fields(model)}


def prepare_model(model: nn.Module, *, precision: str, axis_name: str | None) -> nn.Module:
    """Clone `model` with the compute dtype of `precision` and the batch-norm `axis_name`.

    The model needs a `dtype` field for bfloat16 and an `axis_name` field (passed to
    its BatchNorm layers) for shard_map/pmap when it has batch statistics; models of
    `cnnjax.models` have both.
    """
    fields = _fields(model)
    changes: dict[str, Any] = {}
    if "dtype" in fields:
        changes["dtype"] = PRECISIONS[precision]
    elif precision != "float32":
        raise TypeError(
            f"precision={precision!r} needs a model with a `dtype` field (compute dtype); "
            f"{type(model).__name__} has none"
        )
    if "axis_name" in fields:
        changes["axis_name"] = axis_name
    return model.clone(**changes) if changes else model


def _check_sync(model: nn.Module, model_state: Mapping[str, Any], axis: str | None) -> None:
    if axis is not None and "batch_stats" in model_state and "axis_name" not in _fields(model):
        raise ValueError(
            f"{type(model).__name__} has batch statistics but no `axis_name` field, so its "
            "batch norm cannot be synchronised across devices under shard_map/pmap; add the "
            "field (passed to nn.BatchNorm) or use strategy='jit'"
        )


def _images(batch: Mapping[str, Any], dtype: Any) -> jax.Array:
    if "image" not in batch:
        raise ValueError(f"batch needs an 'image' entry; it has keys {sorted(batch)}")
    return jnp.asarray(batch["image"]).astype(dtype)


# --------------------------------------------------------------------------- step bodies


def _apply(
    model: nn.Module,
    params: Any,
    model_state: Mapping[str, Any],
    x: jax.Array,
    *,
    train: bool,
    rng: jax.Array | None,
) -> tuple[jax.Array, dict[str, Any]]:
    variables = {"params": params, **model_state}
    rngs = {"dropout": rng} if rng is not None else None
    if train and model_state:
        logits, new_state = model.apply(
            variables, x, train=True, rngs=rngs, mutable=list(model_state)
        )
        return logits, dict(new_state)
    logits = model.apply(variables, x, train=train, rngs=rngs)
    return logits, dict(model_state)


def _reducer(axis: str | None) -> Callable[[Any], Any]:
    """psum over `axis` (per-device code) or identity (global code under jit)."""
    if axis is None:
        return lambda tree: tree
    return lambda tree: jax.tree.map(lambda x: lax.psum(x, axis), tree)


def _global_loss(terms: Mapping[str, Any], total: Callable[[Any], Any]) -> jax.Array:
    """`combine_loss_terms` with each count summed over devices (no gradient through it):
    per device the local sum / global count, so its psum is the global loss."""
    return combine_loss_terms(
        {name: (value, lax.stop_gradient(total(count))) for name, (value, count) in terms.items()}
    )


def _metrics(
    task: Task,
    logits: jax.Array,
    batch: Mapping[str, Any],
    loss: jax.Array,
    total: Callable[[Any], Any],
) -> Metrics:
    out = {name: total(pair) for name, pair in task.metrics(logits, batch).items()}
    n_valid = total(jnp.sum(valid_weights(batch, logits.shape[0])))
    out["loss"] = (loss * n_valid, n_valid)
    return out


def dropout_key(rng: jax.Array, step: jax.Array, axis: str | None = None) -> jax.Array:
    """The step's dropout key: `fold_in(rng, step)`, then the device index along `axis`.

    Call with `axis` inside shard_map/pmap (per-device code): devices draw different
    masks, and the same state and batch always give the same key.
    """
    key = jax.random.fold_in(rng, step)
    if axis is not None:
        key = jax.random.fold_in(key, lax.axis_index(axis))
    return key


def _all_finite(loss: jax.Array, grads: Any) -> jax.Array:
    ok = jnp.isfinite(loss)
    for g in jax.tree.leaves(grads):
        ok = ok & jnp.all(jnp.isfinite(g))
    return ok


def keep_frozen_stats(new: Any, old: Any, patterns: tuple[str, ...]) -> Any:
    """`new` model state with the leaves whose path (without the collection) matches a
    pattern taken from `old`; every pattern must match some leaf (a typo is a ValueError)."""
    names = jax.tree_util.tree_map_with_path(
        lambda path, _: path_name(path[1:]), old)  # path[0]: the collection
    flat = jax.tree.leaves(names)
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in flat):
            raise ValueError(f"config.freeze_batch_stats pattern {pattern!r} matches no model "
                             f"state; paths look like {flat[:4]}")
    return jax.tree.map(
        lambda n, o, name: o if any(fnmatch.fnmatchcase(name, p) for p in patterns) else n,
        new, old, names)


def train_body(
    state: TrainState,
    batch: Mapping[str, Any],
    halted: jax.Array,
    *,
    model: nn.Module,
    task: Task,
    tx: optax.GradientTransformation,
    compute_dtype: Any,
    axis: str | None,
    vary: bool,
    freeze_batch_stats: tuple[str, ...] = (),
    ema: EmaSpec | None = None,
) -> tuple[TrainState, Metrics]:
    """One optimizer step; per-device code when `axis` is set, global code otherwise.

    The update is applied only when the loss and every gradient are finite and `halted` (a
    float32 scalar: an earlier step's `metrics["nonfinite"][0]`) is 0; otherwise the state
    is returned unchanged (its step counter too) and `nonfinite` is (1, 1). Chaining each
    step's `nonfinite` into the next one's `halted` freezes a run at its first non-finite
    step without the host looking at any value (see `cnnjax.train.runner.loop`).

    `freeze_batch_stats`: fnmatch patterns of model-state paths (without the collection,
    e.g. "layer1_0/bn1/*") whose values the step keeps as they were (frozen BN statistics).

    `ema`: update `state.ema` to the new params and model state (`cnnjax.train.ema`); the
    guard above keeps it unchanged on a halted or non-finite step, like everything else.
    """
    _check_sync(model, state.model_state, axis)
    check_ema_state(state.ema, ema)
    total = _reducer(axis)
    x = _images(batch, compute_dtype)
    rng = dropout_key(state.rng, state.step, axis)

    def loss_fn(params: Any) -> tuple[jax.Array, tuple[jax.Array, dict[str, Any]]]:
        logits, new_model_state = _apply(model, params, state.model_state, x, train=True, rng=rng)
        logits = logits.astype(jnp.float32)
        return _global_loss(task.loss_terms(logits, batch), total), (logits, new_model_state)

    params = state.params
    if vary:
        # With check_vma, differentiating replicated params would psum the gradients
        # implicitly; mark them device-varying so the psum below is the only reduction.
        params = jax.tree.map(lambda p: lax.pcast(p, axis, to="varying"), params)
    (loss, (logits, new_model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    grads = total(grads)
    loss = total(loss)
    metrics = _metrics(task, logits, batch, loss, total)

    if freeze_batch_stats:
        new_model_state = keep_frozen_stats(new_model_state, state.model_state,
                                            freeze_batch_stats)

    def advance() -> TrainState:
        updates, new_opt_state = tx.update(grads, state.opt_state, state.params)
        new_params = optax.apply_updates(state.params, updates)
        new_state = state.replace(
            step=state.step + 1,
            params=new_params,
            model_state=new_model_state,
            opt_state=new_opt_state,
        )
        if ema is not None:
            new_state = new_state.replace(
                ema=update_ema(state.ema, new_params, new_model_state, state.step, ema))
        return new_state

    # A branch, not a select of old and new values: the update then happens in place in the
    # donated buffers, with no copy of the optimizer state (5 ms of a ResNet-18 step on CPU).
    ok = _all_finite(loss, grads) & (halted == 0)
    new_state = lax.cond(ok, advance, lambda: state)
    metrics["nonfinite"] = (1.0 - ok.astype(jnp.float32), jnp.ones((), jnp.float32))
    return new_state, metrics


def eval_body(
    state: TrainState,
    batch: Mapping[str, Any],
    *,
    model: nn.Module,
    task: Task,
    compute_dtype: Any,
    axis: str | None,
) -> Metrics:
    total = _reducer(axis)
    x = _images(batch, compute_dtype)
    logits, _ = _apply(model, state.params, state.model_state, x, train=False, rng=None)
    logits = logits.astype(jnp.float32)
    loss = total(_global_loss(task.loss_terms(logits, batch), total))
    return _metrics(task, logits, batch, loss, total)
