"""Jit-compiled train and eval steps with three data-parallel strategies.

All strategies share one interface and one state layout:

    train_step = make_train_step(model, task, tx, strategy=..., mesh=mesh)
    state, metrics = train_step(state, batch)      # state donated, not usable afterwards
    eval_step = make_eval_step(model, task, strategy=..., mesh=mesh)
    metrics = eval_step(state, batch)

- `state` is the `TrainState` of `create_train_state(..., mesh=mesh)`: global arrays,
  replicated over the `("data",)` mesh (`P()`), for every strategy.
- `batch` is a dict of host-local numpy arrays (this process's share of the global
  batch, leading axis divisible by its number of devices), or global arrays already
  split on `"data"`. The step lays it out for its strategy.
- `metrics` is `{name: (sum, count)}` summed over the global batch (already reduced
  across devices): the task's metrics, `loss` as (loss * valid examples, valid examples)
  and, for training, `nonfinite` as (1 if the step was skipped else 0, 1). Sum them over
  steps with `merge_metrics` and turn them into numbers with `task.finalize`.

Strategies:

- "jit" (default): `jax.jit` with `NamedSharding`s (state `P()`, batch `P("data")`);
  the code is written for the global batch and XLA inserts the collectives. Batch norm
  computes its statistics over the global batch by itself.
- "shard_map": `jax.shard_map` over the mesh; each device runs the step on its shard,
  with explicit collectives: gradients, loss and metric sums are `lax.psum`med (each
  device's loss is its share `sum / global count`, so the psum is the exact global
  mean even when devices hold different numbers of valid examples; with equal shares
  it is the `pmean` of per-device mean gradients), and batch norm `pmean`s E[x] and
  E[x^2] (the model is cloned with `axis_name="data"`).
- "pmap": `jax.pmap` with the same per-device function and collectives. The state goes in
  with `in_axes=None` and comes out with `out_axes=None`, so it keeps the replicated
  layout of the other strategies (no per-device stacking, no per-device copies made by
  JAX's removed replicate helper); the batch gets a leading device axis,
  (devices, B / devices, ...), made by `pmap_batch`. Single-host only in cnnjax's tests;
  use "jit" across hosts.

Per-step dropout key: `fold_in(state.rng, state.step)`, and under shard_map/pmap also
folded with the device index, so devices draw different masks and a run is
deterministic. (The jit strategy draws one mask for the global batch, so dropout masks
differ between strategies; everything else is the same to float32 rounding.)

Mixed precision (`precision="bfloat16"`): the model is cloned with `dtype=bfloat16`
(compute) and the images are cast; parameters, optimizer state, batch statistics,
logits for the loss and the loss itself stay float32.

NaN/Inf guard: `ok = isfinite(loss) and all gradients finite`; when not ok the step
returns the old state unchanged (also its step counter) and `nonfinite = (1, 1)`;
`check_finite(metrics, step)` raises an error naming the step.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax import lax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from cnnjax.train.parallel import (
    DATA_AXIS,
    _check_mesh,
    batch_sharding,
    make_mesh,
    pmap_batch,
    replicated_sharding,
    shard_batch,
)
from cnnjax.train.state import TrainState
from cnnjax.train.tasks import Task, combine_loss_terms, valid_weights

STRATEGIES = ("jit", "shard_map", "pmap")
PRECISIONS = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

Metrics = dict[str, tuple[jax.Array, jax.Array]]
TrainStep = Callable[[TrainState, Mapping[str, Any]], tuple[TrainState, Metrics]]
EvalStep = Callable[[TrainState, Mapping[str, Any]], Metrics]


# --------------------------------------------------------------------------- checks


def _fields(model: nn.Module) -> set[str]:
    return {f.name for f in dataclasses.fields(model)}


def _check_common(model: Any, task: Any, strategy: Any, mesh: Any, precision: Any) -> Mesh:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model={model!r}; expected a flax.linen.Module")
    if not isinstance(task, Task):
        raise TypeError(f"task={task!r}; expected a cnnjax.train.Task")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy!r}; expected one of {STRATEGIES}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}; expected one of {tuple(PRECISIONS)}")
    return make_mesh() if mesh is None else _check_mesh(mesh)


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


def _train_body(
    state: TrainState,
    batch: Mapping[str, Any],
    *,
    model: nn.Module,
    task: Task,
    tx: optax.GradientTransformation,
    compute_dtype: Any,
    axis: str | None,
    vary: bool,
) -> tuple[TrainState, Metrics]:
    """One optimizer step; per-device code when `axis` is set, global code otherwise."""
    _check_sync(model, state.model_state, axis)
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

    updates, new_opt_state = tx.update(grads, state.opt_state, state.params)
    new_state = state.replace(
        step=state.step + 1,
        params=optax.apply_updates(state.params, updates),
        model_state=new_model_state,
        opt_state=new_opt_state,
    )
    ok = _all_finite(loss, grads)
    new_state = jax.tree.map(lambda new, old: jnp.where(ok, new, old), new_state, state)
    metrics["nonfinite"] = (1.0 - ok.astype(jnp.float32), jnp.ones((), jnp.float32))
    return new_state, metrics


def _eval_body(
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


# --------------------------------------------------------------------------- builders


def _compile(
    body: Callable[..., Any], strategy: str, mesh: Mesh, *, out_state: bool, donate: bool
) -> tuple[Callable[..., Any], Callable[[Mapping[str, Any]], Any]]:
    """(compiled fn of (state, placed batch), batch placement) for one strategy."""
    donate_argnums = (0,) if donate else ()
    rep = replicated_sharding(mesh)
    if strategy == "jit":
        fn = jax.jit(
            functools.partial(body, axis=None),
            in_shardings=(rep, batch_sharding(mesh)),
            out_shardings=(rep, rep) if out_state else rep,
            donate_argnums=donate_argnums,
        )
        return fn, functools.partial(shard_batch, mesh=mesh)
    if strategy == "shard_map":
        mapped = jax.shard_map(
            functools.partial(body, axis=DATA_AXIS),
            mesh=mesh,
            in_specs=(P(), P(DATA_AXIS)),
            out_specs=(P(), P()) if out_state else P(),
        )
        return jax.jit(mapped, donate_argnums=donate_argnums), functools.partial(
            shard_batch, mesh=mesh
        )
    fn = jax.pmap(
        functools.partial(body, axis=DATA_AXIS),
        axis_name=DATA_AXIS,
        in_axes=(None, 0),
        out_axes=(None, None) if out_state else None,
        donate_argnums=donate_argnums,
        devices=list(mesh.devices.flat),
    )
    return fn, functools.partial(pmap_batch, mesh=mesh)


def make_train_step(
    model: nn.Module,
    task: Task,
    tx: optax.GradientTransformation,
    *,
    strategy: str = "jit",
    mesh: Mesh | None = None,
    precision: str = "float32",
    donate: bool = True,
) -> TrainStep:
    """`train_step(state, batch) -> (state, metrics)`, compiled for `strategy` on `mesh`.

    See the module docstring for the layouts, the metrics and the guarantees. The
    input state is donated (its buffers are reused) unless `donate=False`.
    `train_step.lower(state, batch)` gives the lowered computation (cost analysis).
    """
    mesh = _check_common(model, task, strategy, mesh, precision)
    if not isinstance(tx, optax.GradientTransformation):
        raise TypeError(f"tx={tx!r}; expected an optax.GradientTransformation")
    axis = None if strategy == "jit" else DATA_AXIS
    body = functools.partial(
        _train_body,
        model=prepare_model(model, precision=precision, axis_name=axis),
        task=task,
        tx=tx,
        compute_dtype=PRECISIONS[precision],
        vary=strategy == "shard_map",
    )
    fn, place = _compile(body, strategy, mesh, out_state=True, donate=donate)

    def train_step(state: TrainState, batch: Mapping[str, Any]) -> tuple[TrainState, Metrics]:
        return fn(state, place(batch))

    train_step.lower = lambda state, batch: fn.lower(state, place(batch))
    return train_step


def make_eval_step(
    model: nn.Module,
    task: Task,
    *,
    strategy: str = "jit",
    mesh: Mesh | None = None,
    precision: str = "float32",
) -> EvalStep:
    """`eval_step(state, batch) -> metrics` (model in eval mode; the state is not changed).

    Rows with `batch["valid"] == 0` (padding of the last batch) count nowhere, so
    metrics summed over an epoch with `merge_metrics` are exact.
    """
    mesh = _check_common(model, task, strategy, mesh, precision)
    axis = None if strategy == "jit" else DATA_AXIS
    body = functools.partial(
        _eval_body,
        model=prepare_model(model, precision=precision, axis_name=axis),
        task=task,
        compute_dtype=PRECISIONS[precision],
    )
    fn, place = _compile(body, strategy, mesh, out_state=False, donate=False)

    def eval_step(state: TrainState, batch: Mapping[str, Any]) -> Metrics:
        return fn(state, place(batch))

    eval_step.lower = lambda state, batch: fn.lower(state, place(batch))
    return eval_step
