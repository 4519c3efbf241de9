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

NaN/Inf guard: `ok = isfinite(loss) and all gradients finite` (and not `halted`); when not
ok the step returns the old state unchanged (also its step counter) and `nonfinite = (1, 1)`;
`check_finite(metrics, step)` raises an error naming the step.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import numpy as np
import optax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from cnnjax.train.ema import EmaSpec
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
from cnnjax.train.step_bodies import (
    PRECISIONS,
    dropout_key,
    eval_body,
    prepare_model,
    train_body,
)
from cnnjax.train.tasks import Task

__all__ = [
    "PRECISIONS",
    "STRATEGIES",
    "CompiledStep",
    "dropout_key",
    "make_eval_step",
    "make_train_step",
    "prepare_model",
]

STRATEGIES = ("jit", "shard_map", "pmap")


# --------------------------------------------------------------------------- checks


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


# --------------------------------------------------------------------------- builders


def _compile(
    body: Callable[..., Any], strategy: str, mesh: Mesh, *, train: bool, donate: bool
) -> tuple[Callable[..., Any], Callable[[Mapping[str, Any]], Any]]:
    """(compiled fn of placed inputs, batch placement) for one strategy.

    Train: `fn(state, batch, halted) -> (state, metrics)`; eval: `fn(state, batch) -> metrics`.
    The state (and `halted`) are replicated, the batch is split on "data".
    """
    donate_argnums = (0,) if donate else ()
    rep = replicated_sharding(mesh)
    extra = 1 if train else 0  # halted
    if strategy == "jit":
        fn = jax.jit(
            functools.partial(body, axis=None),
            in_shardings=(rep, batch_sharding(mesh), *[rep] * extra),
            out_shardings=(rep, rep) if train else rep,
            donate_argnums=donate_argnums,
        )
        return fn, functools.partial(shard_batch, mesh=mesh)
    if strategy == "shard_map":
        mapped = jax.shard_map(
            functools.partial(body, axis=DATA_AXIS),
            mesh=mesh,
            in_specs=(P(), P(DATA_AXIS), *[P()] * extra),
            out_specs=(P(), P()) if train else P(),
        )
        return jax.jit(mapped, donate_argnums=donate_argnums), functools.partial(
            shard_batch, mesh=mesh
        )
    fn = jax.pmap(
        functools.partial(body, axis=DATA_AXIS),
        axis_name=DATA_AXIS,
        in_axes=(None, 0, *[None] * extra),
        out_axes=(None, None) if train else None,
        donate_argnums=donate_argnums,
        devices=list(mesh.devices.flat),
    )
    return fn, functools.partial(pmap_batch, mesh=mesh)


@dataclasses.dataclass(frozen=True)
class CompiledStep:
    """A compiled train or eval step: `step(state, batch, *extra)`.

    `place(batch)` lays a host batch out on the devices for `compiled`; `placed(state,
    placed_batch, *extra)` calls it. Apart, they let an input pipeline place the next batch
    while the current step runs (`cnnjax.data.prefetch`). `defaults` fill trailing `extra`
    arguments not given (the train step's `halted`). `lower` gives the lowered computation
    (cost analysis) for a host batch.
    """

    compiled: Callable[..., Any]
    place: Callable[[Mapping[str, Any]], Any]
    defaults: tuple[Any, ...] = ()

    def placed(self, state: TrainState, batch: Any, *extra: Any) -> Any:
        return self.compiled(state, batch, *extra, *self.defaults[len(extra):])

    def __call__(self, state: TrainState, batch: Mapping[str, Any], *extra: Any) -> Any:
        return self.placed(state, self.place(batch), *extra)

    def lower(self, state: TrainState, batch: Mapping[str, Any], *extra: Any) -> Any:
        return self.compiled.lower(state, self.place(batch), *extra,
                                   *self.defaults[len(extra):])


def make_train_step(
    model: nn.Module,
    task: Task,
    tx: optax.GradientTransformation,
    *,
    strategy: str = "jit",
    mesh: Mesh | None = None,
    precision: str = "float32",
    donate: bool = True,
    freeze_batch_stats: tuple[str, ...] = (),
    ema: EmaSpec | None = None,
) -> CompiledStep:
    """`train_step(state, batch[, halted]) -> (state, metrics)`, compiled for `strategy` on
    `mesh` (a `CompiledStep`).

    `halted`: a replicated float32 scalar, by default 0; when it is not 0 the step changes
    nothing and reports `nonfinite = (1, 1)`. The training loop passes the previous step's
    `metrics["nonfinite"][0]`, so a run freezes at its first non-finite step while the host
    only looks at the flags when it logs (`cnnjax.train.step_bodies.train_body`).

    `freeze_batch_stats`: patterns of model-state paths the step leaves unchanged
    (`cnnjax.train.step_bodies.keep_frozen_stats`).

    `ema`: also update the state's EMA of the weights (`cnnjax.train.ema`; the state must
    be created with `create_train_state(..., ema=True)`).

    See the module docstring for the layouts, the metrics and the guarantees. The
    input state is donated (its buffers are reused) unless `donate=False`.
    `train_step.lower(state, batch)` gives the lowered computation (cost analysis).
    """
    mesh = _check_common(model, task, strategy, mesh, precision)
    if not isinstance(tx, optax.GradientTransformation):
        raise TypeError(f"tx={tx!r}; expected an optax.GradientTransformation")
    axis = None if strategy == "jit" else DATA_AXIS
    body = functools.partial(
        train_body,
        model=prepare_model(model, precision=precision, axis_name=axis),
        task=task,
        tx=tx,
        compute_dtype=PRECISIONS[precision],
        vary=strategy == "shard_map",
        freeze_batch_stats=tuple(freeze_batch_stats),
        ema=ema,
    )
    fn, place = _compile(body, strategy, mesh, train=True, donate=donate)
    not_halted = jax.device_put(np.zeros((), np.float32), replicated_sharding(mesh))
    return CompiledStep(fn, place, defaults=(not_halted,))


def make_eval_step(
    model: nn.Module,
    task: Task,
    *,
    strategy: str = "jit",
    mesh: Mesh | None = None,
    precision: str = "float32",
) -> CompiledStep:
    """`eval_step(state, batch) -> metrics` (model in eval mode; the state is not changed).

    Rows with `batch["valid"] == 0` (padding of the last batch) count nowhere, so
    metrics summed over an epoch with `merge_metrics` are exact.
    """
    mesh = _check_common(model, task, strategy, mesh, precision)
    axis = None if strategy == "jit" else DATA_AXIS
    body = functools.partial(
        eval_body,
        model=prepare_model(model, precision=precision, axis_name=axis),
        task=task,
        compute_dtype=PRECISIONS[precision],
    )
    fn, place = _compile(body, strategy, mesh, train=False, donate=False)
    return CompiledStep(fn, place)
