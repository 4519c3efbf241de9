"""`export_model`: write a model's eval-mode forward pass in several formats plus `export.json`.

Every format is a function registered in `FORMATS` under its name ("stablehlo", "onnx",
"torch"); it receives an `ExportSpec` (the module, its variables, the input shape of one example)
and the output directory, writes its files and returns `(main file, details for export.json)`.
The forward pass is `model.apply(variables, x, train=False)`: batch statistics frozen, dropout
off, float32 channels-last input `(batch, *spatial, channels)`, logits out (for a U-Net:
per-pixel logits `(batch, *spatial, classes)`).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import secrets
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import cnnjax
from cnnjax.checkpoint import to_json
from cnnjax.ops import onednn
from cnnjax.registry import Registry
from cnnjax.train.steps import prepare_model

EXPORT_FILE = "export.json"
EXPORT_FORMAT_VERSION = 1

# name -> fn(spec, output_dir) -> (path of the main file, details for export.json)
Exporter = Callable[["ExportSpec", Path], tuple[Path, dict[str, Any]]]
FORMATS: Registry[Exporter] = Registry("export format")


class ExportError(RuntimeError):
    """A format cannot be written for this model (unsupported op, missing optional package)."""


@dataclasses.dataclass(frozen=True)
class ExportSpec:
    """What every exporter needs.

    Attributes:
      model: the Linen module (eval-ready: no device axis name).
      variables: `{"params": ..., "batch_stats": ...}` as host NumPy arrays.
      input_shape: shape of ONE example, channels last: (H, W, C), (L, C) or (D, H, W, C).
      name: the model's registry name (or its class name), used in file metadata.
      platforms: StableHLO target platforms ("cpu", "cuda", "rocm", "tpu"); None: this one.
      onnx_batch_size: the fixed batch of the ONNX graph (see `cnnjax.export.onnx_format`).
    """

    model: nn.Module
    variables: Mapping[str, Any]
    input_shape: tuple[int, ...]
    name: str
    platforms: tuple[str, ...] | None = None
    onnx_batch_size: int = 1

    def forward(self, x: jax.Array) -> jax.Array:
        """Eval-mode logits for a float32 batch `x` (batch, *input_shape); weights are constants."""
        return self.model.apply(self.variables, x, train=False)

    def example_input(self, batch: int, seed: int = 0) -> np.ndarray:
        """A deterministic float32 N(0, 1) batch (the scale of normalised images) for checks."""
        rng = np.random.default_rng(seed)
        return rng.standard_normal((batch, *self.input_shape), dtype=np.float32)


def available_formats() -> list[str]:
    """Names accepted by `formats=` (the registered exporters), sorted."""
    return FORMATS.names()


def parse_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    """"stablehlo,onnx" or ["stablehlo", "onnx"] -> checked tuple, duplicates dropped.

    Raises ValueError naming the bad value and the valid format names.
    """
    names = formats.split(",") if isinstance(formats, str) else formats
    if not isinstance(names, list | tuple) or not names or not all(
        isinstance(n, str) and n.strip() for n in names
    ):
        raise ValueError(
            f"formats={formats!r}: expected a non-empty list of export format names from "
            f"{available_formats()}"
        )
    names = [n.strip() for n in names]
    for name in names:
        if name not in FORMATS:
            raise ValueError(
                f"unknown export format {name!r} in formats={formats!r}; expected one or more "
                f"of {available_formats()} (comma-separated)"
            )
    return tuple(dict.fromkeys(names))


def _check_input_shape(input_shape: Any) -> tuple[int, ...]:
    dims = list(input_shape) if isinstance(input_shape, list | tuple) else None
    if dims is None or len(dims) < 2 or not all(
        isinstance(d, int | np.integer) and not isinstance(d, bool) and d >= 1 for d in dims
    ):
        raise ValueError(
            f"input_shape={input_shape!r}: expected the shape of ONE example without the batch "
            "dimension, channels last, positive ints: (H, W, C), (L, C) or (D, H, W, C)"
        )
    return tuple(int(d) for d in dims)


def _describe(value: Any) -> Any:
    """A module field as JSON: dtypes by name, functions by qualified name, else its repr."""
    if isinstance(value, type):
        try:
            return np.dtype(value).name
        except TypeError:
            pass
    value = to_json(value)
    try:
        json.dumps(value)
        return value
    except TypeError:
        pass
    fn = getattr(value, "fun", value)  # jax.custom_jvp wraps the function in .fun
    name = getattr(fn, "__qualname__", None)
    if callable(value) and name:
        return f"{getattr(fn, '__module__', '')}.{name}"
    return repr(value)


def _model_fields(model: nn.Module) -> dict[str, Any]:
    """The module's dataclass fields (its options) as JSON-safe values."""
    return {f.name: _describe(getattr(model, f.name))
            for f in dataclasses.fields(model) if f.name not in ("parent", "name")}


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"cnnjax": cnnjax.__version__}
    for dist in ("jax", "jaxlib", "flax", "jax2onnx", "onnx", "torch"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


def export_model(
    model: nn.Module,
    variables: Mapping[str, Any],
    *,
    input_shape: Sequence[int],
    output_dir: str | os.PathLike,
    formats: str | Sequence[str] = ("stablehlo",),
    metadata: Mapping[str, Any] | None = None,
    name: str | None = None,
    platforms: Sequence[str] | None = None,
    onnx_batch_size: int = 1,
) -> dict[str, Path]:
    """Write `model`'s eval-mode forward pass in each of `formats` into `output_dir`.

    Args:
      model: a Linen module as `cnnjax.models.create` gives it.
      variables: its variables `{"params": ..., "batch_stats": ...}` (device or host arrays).
      input_shape: ONE example's shape, channels last, without the batch dimension; the
        batch is symbolic in StableHLO and fixed (`onnx_batch_size`, 1) in ONNX.
      output_dir: a new or empty folder, or an earlier export (with its `export.json`), which
        is replaced whole: everything is written into a hidden sibling folder first and
        renamed into place, so an interrupted export never mixes old and new files.
      formats: names from `available_formats()` ("stablehlo", "onnx", "torch"), as a list or
        a comma-separated string.
      metadata: merged into `export.json` (preprocessing, class names, checkpoint, run...).
      name: the model's registry name for the metadata (default: its class name).
      platforms: StableHLO lowering platforms, e.g. ("cpu", "cuda"); None: the default backend.
      onnx_batch_size: the batch size the ONNX graph is fixed to.

    Returns:
      `{format: main file}` plus `{"export.json": path}`. Raises ValueError/TypeError for bad
      arguments and `ExportError` when a format cannot represent the model (the message names
      the op or the missing package).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model={type(model).__name__}: expected a flax.linen Module")
    if not isinstance(variables, Mapping) or "params" not in variables:
        raise TypeError(
            f"variables={type(variables).__name__}: expected a mapping with a 'params' collection"
        )
    shape = _check_input_shape(input_shape)
    names = parse_formats(formats)
    if isinstance(onnx_batch_size, bool) or not isinstance(onnx_batch_size, int) or (
        onnx_batch_size < 1
    ):
        raise ValueError(f"onnx_batch_size={onnx_batch_size!r}: expected an int >= 1")
    if platforms is not None and (isinstance(platforms, str) or not all(
        isinstance(p, str) for p in platforms
    )):
        raise TypeError(f"platforms={platforms!r}: expected a list of platform names or None")
    model = prepare_model(model, precision="float32", axis_name=None)
    host = jax.tree.map(np.asarray, jax.device_get(dict(variables)))
    spec = ExportSpec(model, host, shape, name or type(model).__name__,
                      None if platforms is None else tuple(platforms), onnx_batch_size)
    out_shape = jax.eval_shape(spec.forward, jax.ShapeDtypeStruct((1, *shape), jnp.float32))
    output_dir = _check_output_dir(Path(output_dir))
    stage = output_dir.with_name(f".{output_dir.name}.partial-{secrets.token_hex(4)}")
    try:
        output_dir.parent.mkdir(parents=True, exist_ok=True)
        stage.mkdir()
    except OSError as e:
        raise OSError(e.errno, f"cannot write into {str(output_dir.parent)!r} for output_dir "
                               f"{str(output_dir)!r}: {e.strerror}") from None
    try:
        paths = _write_all(spec, model, names, stage, shape, out_shape, metadata)
        _publish(stage, output_dir)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return {k: output_dir / p.relative_to(stage) for k, p in paths.items()}


def _check_output_dir(output_dir: Path) -> Path:
    """An export replaces its folder whole: refuse a file, or a folder of other things."""
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"output_dir {str(output_dir)!r} is a file; expected a folder (new, "
                         "empty, or an earlier export)")
    for parent in output_dir.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"output_dir {str(output_dir)!r} is inside {str(parent)!r}, "
                                 "a file; expected a folder")
            break
    if output_dir.is_dir() and not (output_dir / EXPORT_FILE).exists() and any(
            output_dir.iterdir()):
        raise ValueError(
            f"output_dir {str(output_dir)!r} holds files but no {EXPORT_FILE}: an export "
            "replaces its folder whole, so it only writes into a new or empty folder or an "
            "earlier export; choose another --output")
    return output_dir


def _publish(stage: Path, output_dir: Path) -> None:
    """Move the complete `stage` to `output_dir`: an earlier export there is moved aside first
    and removed after, so an interruption leaves either the old export or the new one, never
    a mix (at worst the old one under a hidden `.NAME.old-*` name beside it)."""
    old = None
    if output_dir.exists():
        old = output_dir.with_name(f".{output_dir.name}.old-{secrets.token_hex(4)}")
        os.rename(output_dir, old)
    try:
        os.rename(stage, output_dir)
    except OSError:
        if old is not None:
            os.rename(old, output_dir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_all(spec: ExportSpec, model: nn.Module, names: Sequence[str], output_dir: Path,
               shape: tuple[int, ...], out_shape: Any, metadata: Mapping[str, Any] | None
               ) -> dict[str, Path]:
    paths: dict[str, Path] = {}
    artifacts: dict[str, Any] = {}
    with onednn.disabled():  # artifacts call XLA's convs, not this process's oneDNN kernel
        for fmt in names:
            path, details = FORMATS.get(fmt)(spec, output_dir)
            paths[fmt] = path
            artifacts[fmt] = {"file": path.name, **details}
    metadata = dict(metadata or {})
    info = {
        "export_format_version": EXPORT_FORMAT_VERSION,
        "model": {"name": spec.name, "class": type(model).__name__,
                  "fields": _model_fields(model), **dict(metadata.pop("model", {}))},
        "input": {"shape": [None, *shape], "dtype": "float32",
                  "layout": "channels-last: (batch, *spatial, channels)"},
        "output": {"shape": [None, *out_shape.shape[1:]], "dtype": str(out_shape.dtype),
                   "meaning": "logits (before softmax), over the last axis"},
        **metadata,
        "artifacts": artifacts,
        "exported_with": _versions(),
    }
    paths[EXPORT_FILE] = output_dir / EXPORT_FILE
    paths[EXPORT_FILE].write_text(json.dumps(to_json(info), indent=2) + "\n")
    return paths
