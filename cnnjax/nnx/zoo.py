"""The model zoo as Flax NNX modules: `ZooModel` and `create`.

A `ZooModel` holds a zoo model's Linen variables as NNX variables (converted by Flax's bridge,
`flax.nnx.bridge.variables.linen_vars_to_nnx_attrs`, as `nnx.bridge.ToNNX` does: collection
"params" -> `nnx.Param`, "batch_stats" -> `nnx.BatchStat`) and calls the Linen module's
`apply` on them. Unlike `ToNNX` it handles train/eval mode the NNX way (below).
So the parameter names and values are the Linen zoo's, path for path: the NNX state of
`create("resnet18", ...)` has `stem_conv/kernel` (an `nnx.Param`) and `stem_norm/mean` (an
`nnx.BatchStat`) where the Linen variables have `params/stem_conv/kernel` and
`batch_stats/stem_norm/mean` (`cnnjax.nnx.convert` maps one to the other, bitwise).

Train/eval mode follows NNX: `model.train()` / `model.eval()` set `use_running_average` and
`deterministic` (as on `nnx.BatchNorm` / `nnx.Dropout`); a fresh module is in train mode, as
NNX's own layers are. The Linen zoo has one `train` flag for both, so they must agree. In train
mode a call updates the batch statistics in place (as `nnx.BatchNorm` does) and draws its
dropout key from the module's `rngs` ("dropout" stream, else "default").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx, traverse_util
from flax.nnx import bridge

from cnnjax import models

__all__ = ["COLLECTIONS", "ZooModel", "create"]

#: Linen collection -> NNX variable type, for the collections the zoo has.
COLLECTIONS: dict[str, type[nnx.Variable]] = {"params": nnx.Param, "batch_stats": nnx.BatchStat}

_OWN = frozenset({"linen_module", "rngs", "use_running_average", "deterministic",
                  "variable_names"})


class ZooModel(nnx.Module):
    """A Linen zoo model as an NNX module (see the module docstring).

    Attributes:
      linen_module: the Linen module (static).
      rngs: `nnx.Rngs` for dropout in train mode, or None.
      use_running_average, deterministic: eval mode when True (`model.eval()`).
      <name>: one attribute per top-level Linen submodule, a nested dict of `nnx.Param` /
        `nnx.BatchStat` (the paths of the Linen variables without their collection).
    """

    def __init__(self, linen_module: nn.Module, variables: Mapping[str, Any], *,
                 rngs: nnx.Rngs | None = None) -> None:
        unknown = sorted(set(variables) - set(COLLECTIONS))
        if unknown:
            raise ValueError(f"variables has collections {unknown}; a ZooModel holds "
                             f"{sorted(COLLECTIONS)} only")
        self.linen_module = linen_module
        self.rngs = rngs
        self.use_running_average = False
        self.deterministic = False
        attrs = bridge.variables.linen_vars_to_nnx_attrs(dict(variables))
        clash = sorted(name for name in attrs if name in _OWN or hasattr(nnx.Module, name))
        if clash:
            raise ValueError(f"{type(linen_module).__name__} has submodules named {clash}, "
                             "which are attributes of ZooModel")
        self.variable_names = tuple(sorted(attrs))
        for name, value in attrs.items():
            setattr(self, name, nnx.data(value))

    def variables(self) -> dict[str, Any]:
        """The Linen variables `{"params": ..., "batch_stats": ...}` (the module's arrays)."""
        flat: dict[tuple[str, ...], Any] = {}
        for name in self.variable_names:
            tree = getattr(self, name)
            tree = tree if isinstance(tree, Mapping) else {(): tree}
            for path, var in traverse_util.flatten_dict(dict(tree)).items():
                path = path if isinstance(path, tuple) else (path,)
                flat[(_collection(var), name, *[p for p in path if p != ()])] = var.get_value()
        return traverse_util.unflatten_dict(flat)

    def _check_mode(self) -> bool:
        if self.use_running_average != self.deterministic:
            raise ValueError(
                f"use_running_average={self.use_running_average} and deterministic="
                f"{self.deterministic}; the zoo's Linen models have one train flag for both: "
                "use model.train() or model.eval()")
        return not self.use_running_average

    def __call__(self, x: jax.Array, *, dropout_key: jax.Array | None = None,
                 **kwargs: Any) -> Any:
        """The Linen model's output for `x` (batch, *spatial, channels) in this mode.

        `dropout_key`: the key of the dropout masks in train mode (default: drawn from
        `self.rngs`). Other keyword arguments go to the Linen model (`return_features`)."""
        train = self._check_mode()
        variables = self.variables()
        if train and dropout_key is None and self.rngs is not None:
            dropout_key = self.rngs.dropout()
        rngs = {"dropout": dropout_key} if train and dropout_key is not None else None
        if not (train and "batch_stats" in variables):
            return self.linen_module.apply(variables, x, train=train, rngs=rngs, **kwargs)
        out, updates = self.linen_module.apply(variables, x, train=True, rngs=rngs,
                                               mutable=["batch_stats"], **kwargs)
        self.set_collection("batch_stats", updates["batch_stats"])
        return out

    def set_collection(self, collection: str, tree: Mapping[str, Any]) -> None:
        """Set the arrays of one Linen collection (`tree`: its nested dict), in place."""
        for path, value in traverse_util.flatten_dict(dict(tree)).items():
            node = getattr(self, path[0])
            for key in path[1:]:
                node = node[key]
            if _collection(node) != collection:
                raise ValueError(f"{'/'.join(path)} is not in collection {collection!r}")
            node.set_value(value)


def _collection(var: Any) -> str:
    for name, kind in COLLECTIONS.items():
        if type(var) is kind:
            return name
    raise TypeError(f"{var!r} is not one of the NNX variable types {list(COLLECTIONS.values())}")


def _input_spec(input_shape: Any) -> tuple[int, ...]:
    if (not isinstance(input_shape, Sequence) or len(input_shape) < 2
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1
                       for d in input_shape)):
        raise ValueError(f"input_shape={input_shape!r}; expected (batch, *spatial, channels) "
                         "of positive ints, e.g. (1, 32, 32, 3)")
    return tuple(input_shape)


def create(name: str, *, input_shape: Sequence[int], rngs: nnx.Rngs | int = 0,
           num_classes: int | None = None, **options: Any) -> ZooModel:
    """The zoo model `name` (`cnnjax.models.create(name, num_classes, **options)`) as an
    NNX module, initialised for inputs of `input_shape` (batch, *spatial, channels).

    `rngs`: an `nnx.Rngs` or an int seed; its "params" stream (else "default") draws the
    init key `k`, and the weights are those of `linen_model.init({"params": k}, x,
    train=False)` (the Linen zoo's initialisers, unchanged). The module keeps `rngs` for
    dropout in train mode.
    """
    linen_module = models.create(name, num_classes=num_classes, **options)
    shape = _input_spec(input_shape)
    if isinstance(rngs, int) and not isinstance(rngs, bool):
        rngs = nnx.Rngs(rngs)
    if not isinstance(rngs, nnx.Rngs):
        raise TypeError(f"rngs={rngs!r}; expected an nnx.Rngs or an int seed")
    variables = linen_module.init({"params": rngs.params()}, jnp.zeros(shape), train=False)
    return ZooModel(linen_module, variables, rngs=rngs)
