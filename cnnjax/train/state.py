"""The train state: one pytree of arrays, created straight onto its sharding.

`TrainState` holds arrays only (no model, no optimizer object), so Orbax saves and
restores it as is and `jax.jit` donates it whole. The model and the Optax
transformation are passed to the step builders instead.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from cnnjax.train.ema import fresh_ema
from cnnjax.train.parallel import _check_mesh, make_mesh, replicated_sharding


@dataclasses.dataclass(frozen=True)
class TrainState:
    """Everything that changes during training, as arrays.

    Attributes:
      step: int32 scalar, the number of `train_step` calls applied so far.
      params: the model's "params" collection (float32 master weights).
      model_state: the other variable collections, e.g. `{"batch_stats": ...}`, or `{}`.
      opt_state: the Optax state for `params`.
      rng: uint32 (2,) raw PRNG key data; the step folds in the step number (and the
        device index under shard_map/pmap) to get its dropout key.
      ema: None (no EMA, `config.ema_decay = 0`), or `{"params": ..., "model_state": ...}`,
        the exponential moving average of both (float32; `cnnjax.train.ema`).

    A pytree whose children are the fields in this order, `ema` only when it is not None:
    a state without EMA has exactly the tree (and the checkpoint layout) it had before
    the field existed, so older checkpoints restore into it and new ones look the same.
    """

    step: jax.Array
    params: Any
    model_state: Any
    opt_state: Any
    rng: jax.Array
    ema: Any = None

    def replace(self, **changes: Any) -> TrainState:
        """A copy with `changes` (as `flax.struct.dataclass`'s `replace`)."""
        return dataclasses.replace(self, **changes)


_FIELDS = ("step", "params", "model_state", "opt_state", "rng")


def _flatten(state: TrainState) -> tuple[list[tuple[Any, Any]], bool]:
    has_ema = state.ema is not None
    names = (*_FIELDS, "ema") if has_ema else _FIELDS
    return [(jax.tree_util.GetAttrKey(n), getattr(state, n)) for n in names], has_ema


def _unflatten(has_ema: bool, children: Any) -> TrainState:
    return TrainState(*children) if has_ema else TrainState(*children, ema=None)


jax.tree_util.register_pytree_with_keys(TrainState, _flatten, _unflatten)


def as_key_data(rng: Any, name: str = "rng") -> jax.Array:
    """An int seed, a raw uint32 (2,) key or a typed key -> raw uint32 (2,) key data."""
    if isinstance(rng, int | np.integer) and not isinstance(rng, bool):
        return jax.random.key_data(jax.random.key(int(rng)))
    if isinstance(rng, jax.Array | np.ndarray):
        if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
            return jax.random.key_data(rng)
        if rng.dtype == np.uint32 and rng.shape == (2,):
            return jnp.asarray(rng)
    raise TypeError(
        f"{name}={rng!r}; expected an int seed, a jax.random.key(...) or a uint32 (2,) raw key"
    )


def _input_spec(sample: Any) -> jax.ShapeDtypeStruct:
    if isinstance(sample, tuple | list) and all(
        isinstance(d, int | np.integer) and not isinstance(d, bool) for d in sample
    ):
        if len(sample) < 2 or any(int(d) < 1 for d in sample):
            raise ValueError(
                f"input shape {tuple(sample)}; expected (batch, *spatial, channels) "
                "of positive ints"
            )
        return jax.ShapeDtypeStruct(tuple(int(d) for d in sample), jnp.float32)
    if hasattr(sample, "shape") and hasattr(sample, "dtype"):
        # The steps feed images as float32 (or bfloat16 compute): init the same way.
        return jax.ShapeDtypeStruct(tuple(sample.shape), jnp.float32)
    raise TypeError(
        f"input_shape_or_sample={sample!r}; expected a shape tuple, an array or a "
        "jax.ShapeDtypeStruct"
    )


def init_variables(
    model: nn.Module, rng: jax.Array, input_spec: jax.ShapeDtypeStruct
) -> tuple[Any, Any]:
    """`model.init` in eval mode on zeros -> (params, other collections). Pure; trace it."""
    k_params, k_dropout = jax.random.split(rng)
    x = jnp.zeros(input_spec.shape, input_spec.dtype)
    variables = dict(model.init({"params": k_params, "dropout": k_dropout}, x, train=False))
    if "params" not in variables:
        raise ValueError(f"{type(model).__name__}.init created no 'params' collection")
    params = variables.pop("params")
    return params, variables


def create_train_state(
    model: nn.Module,
    tx: optax.GradientTransformation,
    rng: Any,
    input_shape_or_sample: Any,
    *,
    mesh: Mesh | None = None,
    ema: bool = False,
) -> TrainState:
    """A fresh `TrainState`, with every array created directly on its replicated sharding.

    Shapes come from `jax.eval_shape` (no memory used); then one jit with
    `out_shardings` runs the initialisers on the devices of `mesh` (all devices when
    `None`), so a large model is never materialised on the host or on one device.

    Args:
      model: a Linen module with `__call__(x, *, train=False, ...)`.
      tx: the Optax transformation (its state is part of the train state).
      rng: int seed or PRNG key; split into the init key and the state's own key.
      input_shape_or_sample: (batch, *spatial, channels) shape, or an array of that shape
        (only its shape is used; the model is initialised on float32 zeros).
      mesh: the `("data",)` mesh the state is replicated over.
      ema: also hold an exponential moving average of the weights, starting as a copy of
        them (`cnnjax.train.ema`; the train step then needs `ema=EmaSpec(...)`).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model={model!r}; expected a flax.linen.Module")
    if not isinstance(tx, optax.GradientTransformation):
        raise TypeError(f"tx={tx!r}; expected an optax.GradientTransformation")
    mesh = make_mesh() if mesh is None else _check_mesh(mesh)
    key = as_key_data(rng)
    spec = _input_spec(input_shape_or_sample)

    def init(key: jax.Array) -> TrainState:
        init_key, state_key = jax.random.split(key)
        params, model_state = init_variables(model, init_key, spec)
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            model_state=model_state,
            opt_state=tx.init(params),
            rng=state_key,
            ema=fresh_ema(params, model_state) if ema else None,
        )

    abstract = jax.eval_shape(init, key)
    shardings = jax.tree.map(lambda _: replicated_sharding(mesh), abstract)
    return jax.jit(init, out_shardings=shardings)(key)


def param_count(tree: Any) -> int:
    """Total number of scalars in a pytree (e.g. `state.params`)."""
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))
