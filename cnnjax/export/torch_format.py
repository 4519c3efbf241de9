"""PyTorch: a torchvision-layout state dict (`model.pth`, and `model.safetensors`).

The parameter mapping is the model zoo's (`cnnjax.models.to_torchvision`, for the ResNet, VGG
and AlexNet families): names, shapes and layouts as torchvision's `resnet18()`, `vgg11_bn()`,
`alexnet()`... hold them, so `model.load_state_dict(torch.load("model.pth"), strict=True)`
works. PyTorch is channels-first: feed it `x.transpose(0, 3, 1, 2)` of the channels-last input
described in `export.json`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np

from cnnjax import models
from cnnjax.export.core import FORMATS, ExportError, ExportSpec

__all__ = ["FILE", "SAFETENSORS_FILE", "export_torch", "torchvision_state"]

FILE = "model.pth"
SAFETENSORS_FILE = "model.safetensors"


def torchvision_state(spec: ExportSpec) -> dict[str, np.ndarray]:
    """`cnnjax.models.to_torchvision(model, variables)`, or ExportError when it is missing."""
    to_torchvision = getattr(models, "to_torchvision", None)
    if to_torchvision is None:
        raise ExportError(
            "the 'torch' export format needs cnnjax.models.to_torchvision (the torchvision "
            "weight mapping), which this cnnjax does not have"
        )
    try:
        state = to_torchvision(spec.model, spec.variables)
    except (ValueError, TypeError, KeyError, NotImplementedError) as e:
        raise ExportError(
            f"cannot write {spec.name} ({type(spec.model).__name__}) as a torchvision state "
            f"dict: {e}"
        ) from e
    return {k: np.ascontiguousarray(v) for k, v in state.items()}


@FORMATS.register("torch")
def export_torch(spec: ExportSpec, output_dir: Path) -> tuple[Path, dict[str, Any]]:
    """Write `model.pth` (torch.save of a tensor dict) and `model.safetensors`."""
    state = torchvision_state(spec)
    try:
        torch = importlib.import_module("torch")
    except ImportError as e:
        raise ExportError(f"the 'torch' export format needs PyTorch ({e})") from e
    path = output_dir / FILE
    torch.save({k: torch.from_numpy(v.copy()) for k, v in state.items()}, path)
    details: dict[str, Any] = {"layout": "torchvision state dict, channels-first (NCHW)",
                               "num_tensors": len(state)}
    try:
        safetensors_numpy = importlib.import_module("safetensors.numpy")
    except ImportError:
        return path, details
    safetensors_numpy.save_file(state, str(output_dir / SAFETENSORS_FILE))
    return path, {**details, "safetensors": SAFETENSORS_FILE}
