"""Analytic FLOPs of a model: multiply-adds of its convolutions and matrix products, counted
from the forward pass's jaxpr, the same number for every column of a benchmark.

XLA's cost analysis is no fair count: it cannot see inside custom calls (cnnjax's oneDNN
convolutions count as 0) and it adds element-wise work that differs between programs. Here
a convolution costs 2 * output elements * (kernel elements per output channel), divided by
the input dilation (a transposed convolution as XLA writes it multiplies the inserted zeros
too, which no implementation computes), and a matrix product 2 * output elements *
contracted size. A training step counts 3x the forward pass (the input and weight gradients
each cost about one forward), the usual convention of MFU figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
from jax.extend import core as jex_core

TRAIN_FACTOR = 3


def _conv_flops(eqn: Any) -> float:
    rhs = eqn.invars[1].aval.shape
    out = eqn.outvars[0].aval.shape
    rhs_out_dim = eqn.params["dimension_numbers"].rhs_spec[0]
    per_output = math.prod(rhs) / rhs[rhs_out_dim]
    dilation = math.prod(eqn.params.get("lhs_dilation") or (1,))
    return 2.0 * math.prod(out) * per_output / dilation


def _dot_flops(eqn: Any) -> float:
    (lhs_contract, _), _ = eqn.params["dimension_numbers"]
    lhs = eqn.invars[0].aval.shape
    return 2.0 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in lhs_contract)


def _sub_jaxprs(value: Any) -> list[Any]:
    if isinstance(value, jex_core.ClosedJaxpr):
        return [value.jaxpr]
    if isinstance(value, jex_core.Jaxpr):
        return [value]
    if isinstance(value, tuple | list):
        return [j for v in value for j in _sub_jaxprs(v)]
    return []


def jaxpr_flops(jaxpr: Any) -> float:
    """Conv and matmul FLOPs of `jaxpr`, its sub-jaxprs included (scans times their length)."""
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "conv_general_dilated":
            total += _conv_flops(eqn)
        elif name == "dot_general":
            total += _dot_flops(eqn)
        repeat = eqn.params.get("length", 1) if name == "scan" else 1
        for sub in (j for v in eqn.params.values() for j in _sub_jaxprs(v)):
            total += repeat * jaxpr_flops(sub)
    return total


def forward_flops(fn: Callable[..., Any], *args: Any) -> float:
    """FLOPs of one call `fn(*args)` (arrays or `jax.ShapeDtypeStruct`s)."""
    return jaxpr_flops(jax.make_jaxpr(fn)(*args).jaxpr)


def model_flops(model_name: str, shape: tuple[int, ...], classes: int) -> dict[str, float]:
    """{"eval": forward FLOPs, "train": 3x that} of a benchmark model on a batch of `shape`,
    from the plain-Flax definition (stock layers: one conv primitive per convolution)."""
    import jax.numpy as jnp

    from benchmarks._flax_models import MODELS as FLAX_MODELS

    model = FLAX_MODELS[model_name](num_classes=classes)
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
    forward = forward_flops(lambda v, x: model.apply(v, x), variables, x)
    return {"eval": forward, "train": TRAIN_FACTOR * forward}
