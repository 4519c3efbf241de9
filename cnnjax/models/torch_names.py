"""torchvision's parameter names and layouts for the zoo's ResNet, VGG, AlexNet and the
ResNet encoder of `UNetResNet`: which cnnjax variable is which torchvision tensor, and how
its axes move.

A cnnjax variable is a flat key `(collection, *module_path, leaf)` of the Flax variables
(`flax.traverse_util.flatten_dict`); its torchvision name is `"<module>.<leaf>"`, with leaves
kernel -> weight, bias -> bias, scale -> weight (params) and mean -> running_mean,
var -> running_var (batch_stats). Axes: conv kernels HWIO <-> OIHW; dense kernels
(in, out) <-> (out, in); the first dense layer after a flatten also reorders its inputs from
channels-last (H, W, C) to PyTorch's (C, H, W) flattening order.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from cnnjax.registry import Registry

FlatKey = tuple[str, ...]

LEAF_NAMES: dict[tuple[str, str], str] = {
    ("params", "kernel"): "weight",
    ("params", "bias"): "bias",
    ("params", "scale"): "weight",
    ("batch_stats", "mean"): "running_mean",
    ("batch_stats", "var"): "running_var",
}


@dataclasses.dataclass(frozen=True)
class Entry:
    """One tensor: its torchvision name, its kind ("conv", "linear", "vector") and, for the
    dense layer after a flatten, the (height, width) of the flattened map."""

    torch_key: str
    kind: str
    flatten_hw: tuple[int, int] | None = None


@dataclasses.dataclass(frozen=True)
class Layout:
    """How one model family names its modules in torchvision.

    `module(path)` maps a Flax module path to a torchvision module name, or None for modules
    torchvision does not have (initialised fresh, e.g. a U-Net decoder). `head` is the
    torchvision name of the classifier; `flatten` the modules whose inputs are flattened maps
    of (height, width); `classifier` says whether `num_classes` is the head's output size.
    """

    module: Callable[[tuple[str, ...]], str | None]
    head: str
    flatten: Mapping[str, tuple[int, int]] = dataclasses.field(default_factory=dict)
    classifier: bool = True


# Layout factories by model class name: model -> Layout.
LAYOUTS: Registry[Callable[[Any], Layout]] = Registry("torchvision layout")

_RESNET_SUB = {"proj_conv": "downsample.0", "proj_norm": "downsample.1"}


def resnet_module(path: tuple[str, ...]) -> str | None:
    """torchvision ResNet module name of a cnnjax `ResNet` module path."""
    top = {("stem_conv",): "conv1", ("stem_norm",): "bn1", ("head",): "fc"}
    if path in top:
        return top[path]
    match = re.fullmatch(r"stage(\d+)_block(\d+)", path[0]) if len(path) == 2 else None
    if match is None:
        return None
    stage, block = int(match[1]), int(match[2]) - 1
    sub = _RESNET_SUB.get(path[1]) or re.sub(r"^norm(\d)$", r"bn\1", path[1])
    if not re.fullmatch(r"conv\d|bn\d|downsample\.[01]", sub):
        return None
    return f"layer{stage}.{block}.{sub}"


@LAYOUTS.register("ResNet")
def _resnet_layout(model: Any) -> Layout:
    return Layout(resnet_module, head="fc")


@LAYOUTS.register("UNetResNet")
def _unet_resnet_layout(model: Any) -> Layout:
    def module(path: tuple[str, ...]) -> str | None:
        return resnet_module(path[1:]) if path[0] == "encoder" and len(path) > 1 else None

    return Layout(module, head="fc", classifier=False)


@LAYOUTS.register("VGG")
def _vgg_layout(model: Any) -> Layout:
    names: dict[tuple[str, ...], str] = {}
    index = n_conv = 0
    for c in model.config:
        if c == "M":
            index += 1
            continue
        n_conv += 1
        names[(f"conv{n_conv}",)] = f"features.{index}"
        if model.norm == "batch":
            names[(f"norm{n_conv}",)] = f"features.{index + 1}"
        index += 3 if model.norm == "batch" else 2
    names.update({("fc1",): "classifier.0", ("fc2",): "classifier.3", ("head",): "classifier.6"})
    size = (model.pool_size, model.pool_size)
    return Layout(names.get, head="classifier.6", flatten={"classifier.0": size})


@LAYOUTS.register("AlexNet")
def _alexnet_layout(model: Any) -> Layout:
    names = {f"conv{i + 1}": f"features.{j}" for i, j in enumerate((0, 3, 6, 8, 10))}
    names.update(fc1="classifier.1", fc2="classifier.4", head="classifier.6")

    def module(path: tuple[str, ...]) -> str | None:
        return names.get(path[0]) if len(path) == 1 else None

    return Layout(module, head="classifier.6", flatten={"classifier.1": (6, 6)})


def layout_for(model: Any) -> Layout:
    """The torchvision layout of `model`'s family; ValueError for models torchvision lacks."""
    name = type(model).__name__
    if name not in LAYOUTS.names():
        raise ValueError(
            f"model: torchvision weights exist for {', '.join(LAYOUTS.names())} models; "
            f"got a {name}"
        )
    return LAYOUTS.get(name)(model)


def entries(layout: Layout, shapes: Mapping[FlatKey, tuple[int, ...]]) -> dict[FlatKey, Entry]:
    """The torchvision entry of every cnnjax variable torchvision has (others are left out)."""
    out: dict[FlatKey, Entry] = {}
    for key, shape in shapes.items():
        collection, *path, leaf = key
        module = layout.module(tuple(path)) if path else None
        if module is None or (collection, leaf) not in LEAF_NAMES:
            continue
        kind = "vector"
        if leaf == "kernel":
            kind = "conv" if len(shape) == 4 else "linear"
        hw = layout.flatten.get(module) if kind == "linear" else None
        out[key] = Entry(f"{module}.{LEAF_NAMES[(collection, leaf)]}", kind, hw)
    return out


def _flatten_order(in_features: int, hw: tuple[int, int]) -> np.ndarray:
    """For each channels-last flattened input (h, w, c), its index in PyTorch's (c, h, w)
    flattening of the same map."""
    h, w = hw
    if in_features % (h * w):
        raise ValueError(f"a flattened {h}x{w} map cannot have {in_features} inputs")
    c = in_features // (h * w)
    return np.arange(in_features).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)


def torch_shape(entry: Entry, shape: tuple[int, ...]) -> tuple[int, ...]:
    """torchvision's shape of a cnnjax variable of `shape`."""
    if entry.kind == "conv":
        return (shape[3], shape[2], shape[0], shape[1])
    if entry.kind == "linear":
        return (shape[1], shape[0])
    return tuple(shape)


def to_torch(entry: Entry, value: Any) -> np.ndarray:
    """A cnnjax array in torchvision's layout (a new C-contiguous array)."""
    value = np.asarray(value)
    if entry.kind == "conv":
        return np.ascontiguousarray(value.transpose(3, 2, 0, 1))
    if entry.kind == "linear" and entry.flatten_hw is not None:
        order = _flatten_order(value.shape[0], entry.flatten_hw)
        value = _scatter(value, order)
    return np.ascontiguousarray(value.T) if entry.kind == "linear" else np.array(value)


def _scatter(value: np.ndarray, order: np.ndarray) -> np.ndarray:
    out = np.empty_like(value)
    out[order] = value
    return out


def from_torch(entry: Entry, value: Any) -> np.ndarray:
    """A torchvision array in cnnjax's layout (a new C-contiguous array); inverse of
    `to_torch`. A 2-D transpose then a row gather: faster than one 4-D transpose."""
    value = np.asarray(value)
    if entry.kind == "conv":
        return np.ascontiguousarray(value.transpose(2, 3, 1, 0))
    if entry.kind != "linear":
        return np.array(value)
    value = np.ascontiguousarray(value.T)
    if entry.flatten_hw is not None:
        value = value[_flatten_order(value.shape[0], entry.flatten_hw)]
    return value
