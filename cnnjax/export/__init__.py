"""Export trained models for inference: StableHLO (`jax.export`), ONNX (`jax2onnx`) and
torchvision-layout PyTorch state dicts, each with an `export.json` describing how to use it.

    from cnnjax.export import export_model, export_run
    export_run("runs/mnist", checkpoint="best", formats="stablehlo,onnx")
    export_model(model, variables, input_shape=(32, 32, 3), output_dir="out",
                 formats=["stablehlo"])

Formats are registered in `FORMATS` (one module each); see `available_formats()`.
"""

# Importing the format modules registers them in FORMATS.
from cnnjax.export import onnx_format, stablehlo, torch_format
from cnnjax.export.core import (
    EXPORT_FILE,
    FORMATS,
    ExportError,
    ExportSpec,
    available_formats,
    export_model,
    parse_formats,
)
from cnnjax.export.run import (
    default_formats,
    export_from_flags,
    export_run,
    parse_checkpoint,
    restore_run,
)

__all__ = [
    "EXPORT_FILE",
    "FORMATS",
    "ExportError",
    "ExportSpec",
    "available_formats",
    "default_formats",
    "export_from_flags",
    "export_model",
    "export_run",
    "onnx_format",
    "parse_checkpoint",
    "parse_formats",
    "restore_run",
    "stablehlo",
    "torch_format",
]
