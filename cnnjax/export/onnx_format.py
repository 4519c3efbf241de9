"""ONNX through `jax2onnx` (optional extra `onnx`), checked with onnxruntime when installed.

jax2onnx converts the jaxpr of the eval-mode forward pass primitive by primitive (no
TensorFlow). Limits of jax2onnx 0.17.1 that shape this module:

- the batch dimension is FIXED (`ExportSpec.onnx_batch_size`, default 1): its `lax.pad`
  lowering cannot carry a symbolic dimension, and every cnnjax convolution pads explicitly;
- its max-pooling lowering makes graphs onnxruntime rejects; `cnnjax.export.onnx_plugins`
  replaces it for channels-last pools (installed before every conversion);
- a primitive without a lowering (or with an unsupported layout, e.g. 3D convolutions) fails:
  `ExportError` names the primitive and the Flax module it came from;
- a graph that converts but that onnxruntime rejects or computes differently fails the check
  below, naming onnxruntime's message (it names the ONNX node).

Check: the ONNX graph and JAX run the same N(0, 1) batch; the largest absolute difference must
be within `TOLERANCE` times the largest absolute JAX output.
"""

from __future__ import annotations

import importlib
import logging
import sys
import types
from pathlib import Path
from typing import Any

import jax
import numpy as np

from cnnjax.export.core import FORMATS, ExportError, ExportSpec

__all__ = ["FILE", "TOLERANCE", "export_onnx", "run_onnx"]

FILE = "model.onnx"
OPSET = 23
TOLERANCE = 1e-4


def _import(module: str, purpose: str) -> Any:
    """Import an optional dependency (heavy, so only when the format is asked for)."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ExportError(
            f"{purpose} needs the optional package {module!r} ({e}); install it with: "
            "pip install 'cnnjax[onnx]' && pip install --no-deps jax2onnx==0.17.1"
        ) from e


def _failing_primitive(tb: types.TracebackType | None) -> tuple[str | None, str]:
    """(primitive name, Flax module path) of the equation jax2onnx was lowering at the error."""
    primitive, where = None, ""
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name in ("lower_equation_with_plugin", "lower_jaxpr_with_plugins"):
            eqn = frame.f_locals.get("eqn")
            primitive = frame.f_locals.get("primitive_name", primitive)
            stack = getattr(getattr(eqn, "source_info", None), "name_stack", None)
            where = str(stack) if stack is not None else where
        tb = tb.tb_next
    return primitive, where


def _convert(spec: ExportSpec, path: Path) -> None:
    jax2onnx = _import("jax2onnx", "ONNX export")
    # jax2onnx imports every plugin, its Equinox/dm-pix examples included, and logs a
    # traceback for each one whose package is absent: irrelevant to Linen models.
    logging.getLogger("jax2onnx.plugins.plugin_system").setLevel(logging.ERROR)
    importlib.import_module("cnnjax.export.onnx_plugins").install()  # imports jax2onnx
    shape = (spec.onnx_batch_size, *spec.input_shape)
    try:
        jax2onnx.to_onnx(spec.forward, [shape], model_name=spec.name, opset=OPSET,
                         input_names=["input"], output_names=["logits"],
                         return_mode="file", output_path=str(path))
    except Exception as e:
        primitive, where = _failing_primitive(sys.exc_info()[2])
        op = f"the JAX primitive {primitive!r}" if primitive else "an op"
        at = f" (in {where})" if where else ""
        raise ExportError(
            f"jax2onnx cannot convert {spec.name}: {op}{at} failed: "
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ) from e


def run_onnx(path: str | Path, x: np.ndarray) -> np.ndarray:
    """Logits of the ONNX model at `path` for the float32 batch `x`, with onnxruntime (CPU)."""
    ort = _import("onnxruntime", "running an ONNX model")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: jax2onnx's shape hints draw merge warnings
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return session.run(None, {name: np.asarray(x, np.float32)})[0]


def _check(spec: ExportSpec, path: Path) -> dict[str, Any]:
    try:
        importlib.import_module("onnxruntime")
    except ImportError:
        return {"checked_with_onnxruntime": False}
    x = spec.example_input(spec.onnx_batch_size)
    expected = np.asarray(jax.jit(spec.forward)(x))
    try:
        actual = run_onnx(path, x)
    except Exception as e:
        raise ExportError(
            f"onnxruntime cannot run the ONNX graph jax2onnx made for {spec.name}: "
            f"{type(e).__name__}: {e}"
        ) from e
    scale = float(np.max(np.abs(expected)))
    error = float(np.max(np.abs(actual - expected))) if actual.shape == expected.shape else None
    if error is None or not error <= TOLERANCE * max(scale, 1e-30):
        raise ExportError(
            f"the ONNX graph of {spec.name} disagrees with JAX: output shape {actual.shape} vs "
            f"{expected.shape}, max |difference| {error} for outputs of scale {scale} "
            f"(tolerance {TOLERANCE} of the scale)"
        )
    return {"checked_with_onnxruntime": True, "max_abs_error": error, "output_scale": scale}


@FORMATS.register("onnx")
def export_onnx(spec: ExportSpec, output_dir: Path) -> tuple[Path, dict[str, Any]]:
    """Write `output_dir/model.onnx` and check it against JAX with onnxruntime (if installed)."""
    path = output_dir / FILE
    _convert(spec, path)
    try:
        details = _check(spec, path)
    except ExportError:
        path.unlink(missing_ok=True)  # leave no unverified artifact behind
        raise
    return path, {"batch": f"fixed: {spec.onnx_batch_size}", "opset": OPSET,
                  "input_name": "input", "output_name": "logits", **details}
