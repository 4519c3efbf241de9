"""NNX zoo modules <-> Linen variables, and Orbax checkpoints of Linen variables.

`to_linen_variables(model)` gives `{"params": ..., "batch_stats": ...}` exactly as the Linen
zoo's `model.init` lays them out (the module's own arrays, not copies);
`from_linen_variables(model, variables)` writes such a dict into the module (every path,
shape and dtype must match; a mismatch names them). Round trip Linen -> NNX -> Linen is
bitwise (tested), so one Orbax checkpoint of the Linen variables
(`save_linen_checkpoint`) loads into the Linen model and into the NNX module alike.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import traverse_util

from cnnjax.nnx.zoo import ZooModel

__all__ = ["from_linen_variables", "load_linen_checkpoint", "save_linen_checkpoint",
           "to_linen_variables"]


def _check_model(model: Any) -> ZooModel:
    if not isinstance(model, ZooModel):
        raise TypeError(f"model={type(model).__name__}; expected a cnnjax.nnx.ZooModel "
                        "(from cnnjax.nnx.create)")
    return model


def to_linen_variables(model: ZooModel) -> dict[str, Any]:
    """The Linen variables dict of an NNX zoo module (its arrays, shared)."""
    return _check_model(model).variables()


def _signature(tree: Mapping[str, Any]) -> dict[str, tuple[tuple[int, ...], str]]:
    flat = traverse_util.flatten_dict(dict(tree))
    return {"/".join(map(str, k)): (tuple(v.shape), str(v.dtype)) for k, v in flat.items()}


def mismatches(expected: Mapping[str, Any], given: Mapping[str, Any]) -> list[str]:
    """Paths whose presence, shape or dtype differ between two Linen variables dicts."""
    a, b = _signature(expected), _signature(given)
    lines = [f"{p}: missing from the variables given" for p in sorted(set(a) - set(b))]
    lines += [f"{p}: not a variable of the model" for p in sorted(set(b) - set(a))]
    lines += [f"{p}: model {a[p][0]} {a[p][1]}, given {b[p][0]} {b[p][1]}"
              for p in sorted(set(a) & set(b)) if a[p] != b[p]]
    return lines


def from_linen_variables(model: ZooModel, variables: Mapping[str, Any]) -> ZooModel:
    """Write Linen `variables` (`{"params": ..., "batch_stats": ...}`) into `model`, in place
    (the arrays are used as given); returns `model`. Raises ValueError listing every path
    that is missing, extra, or of another shape/dtype."""
    model = _check_model(model)
    if not isinstance(variables, Mapping):
        raise TypeError(f"variables={type(variables).__name__}; expected a Linen variables "
                        "dict {'params': ..., 'batch_stats': ...}")
    lines = mismatches(model.variables(), variables)
    if lines:
        shown = "\n  ".join(lines[:20]) + ("\n  ..." if len(lines) > 20 else "")
        raise ValueError(f"the variables do not fit this {type(model.linen_module).__name__}:"
                         f"\n  {shown}")
    for collection, tree in variables.items():
        model.set_collection(collection, tree)
    return model


def save_linen_checkpoint(directory: str | os.PathLike, variables: Mapping[str, Any] | ZooModel
                          ) -> None:
    """Save Linen variables (or an NNX zoo module's) as one Orbax checkpoint in `directory`
    (which must not exist yet); the Linen model and `load_linen_checkpoint` both read it."""
    if isinstance(variables, ZooModel):
        variables = variables.variables()
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(os.fspath(os.path.abspath(directory)), dict(variables))
        ckpt.wait_until_finished()


def load_linen_checkpoint(model: ZooModel, directory: str | os.PathLike) -> ZooModel:
    """Restore an Orbax checkpoint of Linen variables into `model` (in place; each array on
    the sharding of the model's own). Returns `model`."""
    model = _check_model(model)
    target = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
        model.variables())
    with ocp.StandardCheckpointer() as ckpt:
        restored = ckpt.restore(os.fspath(os.path.abspath(directory)), target)
    return from_linen_variables(model, restored)
