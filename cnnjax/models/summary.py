"""`summary(model, input_shape)`: a per-layer table of output shapes and parameter counts.

Built on Flax's own machinery, as `nn.tabulate` is: `nn.intercept_methods` records every
module call (path, type, output shape) while `jax.eval_shape` runs `model.init`, so nothing
is computed or allocated and even VGG-19 is summarised in about a second.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class SummaryRow:
    """One module call: `path` (names from the model down, "" for the model itself), module
    type, output shape(s) and the number of parameters in that module and its children."""

    path: tuple[str, ...]
    module: str
    output_shape: Any
    params: int


@dataclasses.dataclass(frozen=True)
class ModelSummary:
    """Rows in call order (parents before their children) and totals; `str()` is a table."""

    model: str
    input_shape: tuple[int, ...]
    rows: tuple[SummaryRow, ...]
    total_params: int
    total_batch_stats: int
    param_bytes: int

    def __str__(self) -> str:
        header = ("layer", "module", "output shape", "params")
        lines = [
            (
                "  " * len(r.path) + (r.path[-1] if r.path else self.model),
                r.module,
                _shape_str(r.output_shape),
                f"{r.params:,}",
            )
            for r in self.rows
        ]
        widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]

        def fmt(cells: Sequence[str]) -> str:
            parts = [c.ljust(w) for c, w in zip(cells[:3], widths[:3], strict=True)]
            return "  ".join([*parts, cells[3].rjust(widths[3])])

        rule = "-" * len(fmt(header))
        out = [f"{self.model} on input {self.input_shape}", rule, fmt(header), rule]
        out += [fmt(line) for line in lines]
        out += [
            rule,
            f"Total params: {self.total_params:,} ({_bytes_str(self.param_bytes)})",
            f"Batch statistics (not trained): {self.total_batch_stats:,}",
        ]
        return "\n".join(out)


def summary(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    dtype: Any = jnp.float32,
    depth: int | None = None,
    train: bool = False,
    **call_kwargs: Any,
) -> ModelSummary:
    """Summarises `model` on an input of `input_shape` (channels-last, batch included).

    Args:
      model: any Linen module whose `__call__` takes the input first.
      input_shape: e.g. `(1, 224, 224, 3)`.
      dtype: input dtype.
      depth: keep rows at most this many levels below the model (None: all; 1: top-level
        layers only). Totals always cover the whole model.
      train: passed to models that take it (the zoo's models do).
      call_kwargs: extra keyword arguments of the model's `__call__`.
    Returns:
      A `ModelSummary`; `print()` it for the table.
    """
    shape = tuple(input_shape)
    if not shape or not all(isinstance(n, int | np.integer) and n >= 1 for n in shape):
        raise ValueError(f"input_shape must be a tuple of positive ints; got {input_shape!r}")
    if depth is not None and (not isinstance(depth, int) or depth < 0):
        raise ValueError(f"depth must be None or an int >= 0; got {depth!r}")
    calls: list[dict[str, Any]] = []

    def interceptor(next_fun, args, kwargs, context):
        if context.method_name != "__call__":
            return next_fun(*args, **kwargs)
        module = context.module
        path = tuple(module.scope.path) if module.scope is not None else ()
        record = {"path": path, "module": type(module).__name__}
        calls.append(record)
        out = next_fun(*args, **kwargs)
        record["output_shape"] = jax.tree.map(lambda a: tuple(np.shape(a)), out)
        return out

    if train:
        call_kwargs = {**call_kwargs, "train": True}
    rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    x = jax.ShapeDtypeStruct(shape, dtype)

    def init(x):
        with nn.intercept_methods(interceptor):
            return model.init(rngs, x, **call_kwargs)

    variables = jax.eval_shape(init, x)
    params = variables.get("params", {})
    stats = variables.get("batch_stats", {})
    rows = []
    seen: set[tuple[str, ...]] = set()
    for call in calls:
        path = call["path"]
        if depth is not None and len(path) > depth:
            continue
        # A module called twice (shared weights) owns its parameters once: count them once.
        n = 0 if path in seen else _subtree_size(params, path)
        seen.add(path)
        rows.append(SummaryRow(path, call["module"], call.get("output_shape"), n))
    leaves = jax.tree.leaves(params)
    return ModelSummary(
        model=type(model).__name__,
        input_shape=shape,
        rows=tuple(rows),
        total_params=sum(int(np.prod(a.shape)) for a in leaves),
        total_batch_stats=sum(int(np.prod(a.shape)) for a in jax.tree.leaves(stats)),
        param_bytes=sum(int(np.prod(a.shape)) * np.dtype(a.dtype).itemsize for a in leaves),
    )


def _subtree_size(tree: Any, path: tuple[str, ...]) -> int:
    node = tree
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return 0
        node = node[key]
    return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(node))


def _shape_str(shape: Any) -> str:
    if shape is None:
        return "?"
    if isinstance(shape, tuple) and all(isinstance(n, int) for n in shape):
        return str(shape)
    leaves = jax.tree.leaves(
        shape, is_leaf=lambda s: isinstance(s, tuple) and all(isinstance(n, int) for n in s)
    )
    return ", ".join(str(s) for s in leaves)


def _bytes_str(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n:.1f} GB"
