"""Predictions for an array of images: logits, class probabilities or masks, batched over a mesh.

    images = preprocess(raw_uint8, info)                   # as the input pipeline does
    probs = predict(model, state, images, mesh=mesh)       # (N, K) or (N, H, W, K)
    labels = probs.argmax(-1)                              # classes or masks

The model runs in eval mode (`train=False`, batch statistics frozen) under `jax.jit` with the
batch split over the `("data",)` mesh; the last batch is padded to a multiple of the batch size
and the padding rows are dropped from the result. Single-process: the whole array lives on this
host (for multi-host evaluation use the loop's `evaluate`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cnnjax.train.parallel import batch_sharding, make_mesh, replicated_sharding
from cnnjax.train.runner.components import Components, make_batches
from cnnjax.train.steps import PRECISIONS, prepare_model

__all__ = ["OUTPUTS", "local_view", "predict", "preprocess", "split_predictions"]

OUTPUTS = ("probabilities", "logits", "labels")


def preprocess(
    images: Any, mean: Any, std: Any, *, normalize: bool = True
) -> np.ndarray:
    """uint8 images (N, *spatial, C) with values 0..255 -> float32 as the input pipeline gives.

    `(x / 255 - mean) / std` per channel (`normalize=False`: only `x / 255`), the formula of
    `cnnjax.data.make_pipeline`, so a model sees the same numbers in prediction as in training.
    """
    x = np.asarray(images)
    if x.dtype != np.uint8:
        raise TypeError(f"images has dtype {x.dtype}; expected uint8 values 0..255")
    mean = np.asarray(mean, np.float64)
    std = np.asarray(std, np.float64)
    if x.ndim < 3 or mean.shape != (x.shape[-1],) or std.shape != mean.shape:
        raise ValueError(
            f"images has shape {x.shape}; expected (N, *spatial, C) with C = {mean.shape[0]} "
            f"(the length of mean={tuple(mean)})"
        )
    if not normalize:
        mean, std = np.zeros_like(mean), np.ones_like(std)
    scale = (1.0 / (255.0 * std)).astype(np.float32)
    shift = (-mean / std).astype(np.float32)
    return x.astype(np.float32) * scale + shift


def _variables(state: Any) -> dict[str, Any]:
    if hasattr(state, "params"):
        return {"params": state.params, **dict(getattr(state, "model_state", {}) or {})}
    if isinstance(state, Mapping) and "params" in state:
        return dict(state)
    raise TypeError(
        f"state={type(state).__name__}; expected a TrainState or a variables dict with 'params'"
    )


def predict(
    model: nn.Module,
    state: Any,
    images: Any,
    *,
    mesh: jax.sharding.Mesh | None = None,
    batch_size: int = 256,
    precision: str = "float32",
    output: str = "probabilities",
) -> np.ndarray:
    """Model outputs for `images` (N, *spatial, C), float32 already preprocessed.

    Args:
      model: the Linen module (as `cnnjax.models.create` gives it).
      state: a `TrainState` or a variables dict `{"params": ..., "batch_stats": ...}`.
      images: float array (N, *spatial, C), e.g. from `preprocess`.
      mesh: a `("data",)` mesh (default: every device); the batch is split over it.
      batch_size: global batch per call; must be a multiple of the mesh's device count.
      precision: "float32" or "bfloat16" compute (outputs are float32).
      output: "probabilities" (softmax over the last axis), "logits" or "labels" (argmax).

    Returns:
      NumPy array: (N, K) for a classifier, (N, *spatial, K) for a segmenter; "labels" drops K.
    """
    if output not in OUTPUTS:
        raise ValueError(f"output={output!r}; expected one of {OUTPUTS}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}; expected one of {tuple(PRECISIONS)}")
    mesh = make_mesh() if mesh is None else mesh
    devices = mesh.devices.size
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}; expected an int >= 1")
    if batch_size % devices:
        raise ValueError(
            f"batch_size={batch_size} is not divisible by the {devices} devices of the mesh"
        )
    x = np.asarray(images)
    if x.ndim < 2 or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(
            f"images has shape {x.shape} and dtype {x.dtype}; expected float (N, *spatial, C)"
        )
    n = x.shape[0]
    if n == 0:
        raise ValueError("images is empty (N = 0)")
    batch_size = min(batch_size, -(-n // devices) * devices)  # small inputs: one small batch
    fn = _compiled(prepare_model(model, precision=precision, axis_name=None), mesh,
                   precision, output)
    variables = jax.device_put(_variables(state), replicated_sharding(mesh))
    out = []
    for start in range(0, n, batch_size):
        chunk = x[start : start + batch_size]
        rows = chunk.shape[0]
        if rows < batch_size:
            pad = np.zeros((batch_size - rows, *chunk.shape[1:]), chunk.dtype)
            chunk = np.concatenate([chunk, pad])
        placed = jax.device_put(chunk, batch_sharding(mesh))
        out.append(np.asarray(jax.device_get(fn(variables, placed)))[:rows])
    return np.concatenate(out)


_CACHE: dict[tuple[str, Any, str, str], Any] = {}
_CACHE_SIZE = 16


def _compiled(model: nn.Module, mesh: jax.sharding.Mesh, precision: str, output: str) -> Any:
    """One jitted forward per (model, mesh, precision, output), reused across calls so that
    predicting image by image or batch by batch compiles once per input shape. Keyed on the
    module's repr (its attributes): modules built from JSON configs hold lists, unhashable."""
    key = (repr(model), mesh, precision, output)
    if key not in _CACHE:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = _forward(model, mesh, PRECISIONS[precision], output)
    return _CACHE[key]


def _forward(model: nn.Module, mesh: jax.sharding.Mesh, dtype: Any, output: str) -> Any:
    def forward(variables: Any, x: jax.Array) -> jax.Array:
        logits = model.apply(variables, x.astype(dtype), train=False).astype(jnp.float32)
        if output == "probabilities":
            return jax.nn.softmax(logits, axis=-1)
        if output == "labels":
            return jnp.argmax(logits, axis=-1).astype(jnp.int32)
        return logits

    return jax.jit(
        forward,
        in_shardings=(replicated_sharding(mesh), batch_sharding(mesh)),
        out_shardings=batch_sharding(mesh),
    )


def local_view(c: Components, state: Any) -> tuple[Components, Any]:
    """(components, state) for prediction in THIS process only.

    Single process: unchanged. Multi-host: a mesh over this process's devices and the
    replicated state copied from its local shard, so process 0 can draw plots and write
    predictions without the other processes taking part.
    """
    if jax.process_count() == 1:
        return c, state
    mesh = jax.sharding.Mesh(np.array(jax.local_devices()), c.mesh.axis_names)
    host = jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), state)
    return dataclasses.replace(c, mesh=mesh), host


def split_predictions(c: Components, state: Any, split: str, *,
                      max_batches: int | None = None) -> dict[str, np.ndarray]:
    """Predicted labels (classes or masks) and targets over `split`, padding rows dropped.

    Uses the run's evaluation pipeline (same preprocessing as `evaluate`), in this process
    only, and `predict` for the forward pass. Keys: targets, predictions, and images
    (preprocessed) when `max_batches` is given.
    """
    cfg = c.config
    batch_size = cfg.eval_batch_size or cfg.batch_size
    batches = make_batches(cfg, split, train=False, whole_split=True)
    key = "label" if c.info.task == "classification" else "mask"
    images, targets, preds = [], [], []
    try:
        for i, batch in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            keep = np.asarray(batch["valid"]).astype(bool) if "valid" in batch else slice(None)
            labels = predict(c.model, state, batch["image"], mesh=c.mesh, batch_size=batch_size,
                             precision=cfg.precision, output="labels")
            preds.append(labels[keep])
            targets.append(np.asarray(batch[key])[keep])
            if max_batches is not None:
                images.append(np.asarray(batch["image"])[keep])
    finally:
        batches.close()
    out = {"targets": np.concatenate(targets), "predictions": np.concatenate(preds)}
    if images:
        out["images"] = np.concatenate(images)
    return out
