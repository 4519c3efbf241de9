"""torchvision and timm weights in and out of the zoo: `from_torchvision`, `to_torchvision`.

    model, variables = from_torchvision("resnet50", "resnet50-11ad3fa6.pth", num_classes=10)
    logits = model.apply(variables, images)            # images: (batch, H, W, 3), channels-last

Names and axis layouts are in `cnnjax.models.torch_names`. The zoo's ResNet pads
symmetrically as PyTorch does (not SAME) and VGG/AlexNet pool adaptively with PyTorch's
bins, so imported models give torchvision's logits at any input size. timm's ResNets use
torchvision's names and load the same way.
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from cnnjax.models import torch_names
from cnnjax.models.registry import create

logger = logging.getLogger(__name__)

Weights = str | os.PathLike | Mapping[str, Any]
FORMATS = (".pth", ".pt", ".safetensors", ".npz")
# Inputs that every supported model accepts (AlexNet needs 63x63); parameter shapes do not
# depend on the input size (adaptive pools), so init and shape inference use this one.
_INIT_SHAPE = (1, 64, 64, 3)


def _to_numpy(value: Any) -> np.ndarray:
    """A NumPy copy of an array or CPU tensor (torch tensors via `detach().cpu()`; bfloat16
    and other dtypes NumPy lacks go through float32)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        if not value.dtype.is_floating_point or value.dtype.itemsize >= 4:
            return value.numpy()
        return value.float().numpy()
    return np.asarray(value)


def _load_file(path: str, suffix: str) -> Any:
    """The file's name -> array mapping; ValueError naming the file when it cannot be read
    (truncated, garbage, another format under this suffix)."""
    kinds = {".safetensors": "safetensors", ".npz": "NumPy .npz"}
    kind = kinds.get(suffix, "PyTorch state dict")
    try:
        if suffix == ".safetensors":
            from safetensors.numpy import load_file  # optional dependency, read without torch

            return load_file(path)
        if suffix == ".npz":
            data = np.load(path, allow_pickle=False)
            if not hasattr(data, "files"):
                raise ValueError("it holds one array, not named arrays: an .npy file?")
            with data:
                return {k: data[k] for k in data.files}
        import torch  # heavy and optional: only the .pth/.pt format needs it

        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            raise ValueError(
                f"weights: {path!r} is not a weights-only state dict (a pickled model? "
                f"save `model.state_dict()` instead): {_first_line(error)}"
            ) from None
    except ImportError:
        raise
    except ValueError as error:
        if str(error).startswith("weights: "):
            raise
        raise ValueError(f"weights: {path!r} is not a readable {kind} file ({_first_line(error)});"
                         " is it complete (an interrupted download?)") from None
    except Exception as error:  # the readers raise anything on a damaged file
        raise ValueError(
            f"weights: {path!r} is not a readable {kind} file ({type(error).__name__}: "
            f"{_first_line(error)}); is it complete (an interrupted download?)") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _check_float(state: Mapping[str, np.ndarray], where: str) -> None:
    """Weights are floating point: an integer (quantised) or bool tensor would be cast to the
    model's float dtype silently, giving nonsense weights."""
    bad = [f"{k} ({v.dtype})" for k, v in state.items()
           if not (np.issubdtype(v.dtype, np.floating) or v.dtype.name == "bfloat16")]
    if bad:
        raise ValueError(
            f"weights: {where} holds non-floating-point tensors: {', '.join(bad[:5])}"
            f"{' ...' if len(bad) > 5 else ''}; expected float32/float16/bfloat16 weights "
            "(a quantised model's integer tensors cannot be loaded as its float weights)")


def read_state_dict(weights: Weights) -> dict[str, np.ndarray]:
    """torchvision-named arrays from a `.pth`/`.pt` state dict (torch, `weights_only=True`),
    a `.safetensors` file (no torch), an `.npz`, or a mapping name -> array/tensor.

    A checkpoint that wraps its state dict under "state_dict" or "model" is unwrapped.
    """
    if isinstance(weights, Mapping):
        state: Any = weights
    elif isinstance(weights, str | os.PathLike):
        path = os.fspath(weights)
        suffix = os.path.splitext(path)[1].lower()
        if suffix not in FORMATS:
            raise ValueError(
                f"weights: expected a file ending in {', '.join(FORMATS)}; got {path!r}"
            )
        if not os.path.isfile(path):
            raise ValueError(f"weights: no such file {path!r}")
        if os.path.getsize(path) == 0:
            raise ValueError(f"weights: {path!r} is empty (0 bytes): an interrupted download?")
        state = _load_file(path, suffix)
    else:
        raise TypeError(
            f"weights: expected a path or a mapping name -> array; got {type(weights).__name__}"
        )
    if not isinstance(state, Mapping):
        raise TypeError(f"weights: expected a state dict (name -> array); got {type(state)}")
    for wrapper in ("state_dict", "model"):
        if isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
    bad = [k for k in state if not isinstance(k, str)]
    if bad:
        raise TypeError(f"weights: parameter names must be str; got {bad[:3]!r}")
    return {k: _to_numpy(v) for k, v in state.items()}


def _shape_tree(model: nn.Module) -> dict[tuple[str, ...], jax.ShapeDtypeStruct]:
    rngs = {"params": jax.random.key(0), "dropout": jax.random.key(0)}
    x = jax.ShapeDtypeStruct(_INIT_SHAPE, jnp.float32)
    return traverse_util.flatten_dict(jax.eval_shape(model.init, rngs, x))


def _mismatch_error(
    name: str,
    missing: list[tuple[str, tuple]],
    unexpected: list[tuple[str, tuple]],
    wrong: list[tuple[str, tuple, tuple]],
) -> ValueError:
    lines = [f"  missing {k}: expected shape {s}" for k, s in missing]
    lines += [f"  unexpected {k}: found shape {s}" for k, s in unexpected]
    lines += [f"  shape mismatch {k}: expected {e}, found {f}" for k, e, f in wrong]
    return ValueError(
        f"weights do not fit {name!r} ({len(missing)} missing, {len(unexpected)} unexpected, "
        f"{len(wrong)} shape mismatches):\n" + "\n".join(lines)
    )


def _plan(
    name: str, model: nn.Module, state: Mapping[str, np.ndarray], reinit_head: bool
) -> tuple[dict, dict, list[str]]:
    """(entries to load, the model's abstract variables, the file's head keys left unused):
    everything checked first, with one ValueError listing every missing key, unexpected key
    and shape mismatch."""
    layout = torch_names.layout_for(model)
    abstract = _shape_tree(model)
    shapes = {k: tuple(v.shape) for k, v in abstract.items()}
    entries = torch_names.entries(layout, shapes)
    head = layout.head + "."
    if reinit_head:
        entries = {k: e for k, e in entries.items() if not e.torch_key.startswith(head)}
    expected = {e.torch_key: torch_names.torch_shape(e, shapes[k]) for k, e in entries.items()}
    dropped = sorted(k for k in state if k.startswith(head) and k not in expected)
    found = {k: tuple(v.shape) for k, v in state.items() if k not in dropped}
    missing = [(k, s) for k, s in expected.items() if k not in found]
    unexpected = [(k, s) for k, s in found.items() if k not in expected]
    wrong = [(k, s, found[k]) for k, s in expected.items() if k in found and found[k] != s]
    if missing or unexpected or wrong:
        raise _mismatch_error(name, missing, unexpected, wrong)
    return entries, abstract, dropped


def _head_classes(layout: torch_names.Layout, state: Mapping[str, np.ndarray]) -> int | None:
    weight = state.get(f"{layout.head}.weight")
    return None if weight is None or weight.ndim != 2 else int(weight.shape[0])


def _key(rng: jax.Array | int) -> jax.Array:
    if isinstance(rng, int) and not isinstance(rng, bool):
        return jax.random.key(rng)
    if isinstance(rng, jax.Array):
        return rng
    raise TypeError(f"rng: expected an int seed or a JAX random key; got {rng!r}")


@functools.partial(jax.jit, static_argnums=0)
def _init(model: nn.Module, key: jax.Array) -> dict[str, Any]:
    """Fresh variables of `model` (compiled once per model configuration: Linen modules hash
    by their fields)."""
    x = jnp.zeros(_INIT_SHAPE, jnp.float32)
    return model.init({"params": key, "dropout": jax.random.key(0)}, x)


def from_torchvision(
    name: str,
    weights: Weights,
    *,
    num_classes: int | None = None,
    rng: jax.Array | int = 0,
    **options: Any,
) -> tuple[nn.Module, dict[str, Any]]:
    """The zoo model `name` with torchvision/timm weights: `(model, variables)`.

    Args:
      name: a registered model with a torchvision layout: resnet18/34/50/101/152,
        vgg11/13/16/19 (and `_bn`), alexnet, unet_resnet18/34/50 (encoder from the ResNet).
      weights: see `read_state_dict`; `num_batches_tracked` entries are ignored.
      num_classes: None keeps the file's head; another number re-initialises the head
        (0: no head, `model.apply` returns pooled features). For U-Nets, the segmentation
        classes; the decoder and head are always fresh and the file's `fc` is dropped.
      rng: seed or key of the fresh parameters.
      options: further `models.create` options (dtype, axis_name, ...).
    Returns:
      The module and `{"params": ..., "batch_stats": ...}` in the model's parameter dtype.
      Anything initialised fresh or dropped from the file is named in one INFO log line.
    Raises:
      ValueError listing every missing key, unexpected key and shape mismatch at once.
    """
    key = _key(rng)
    state = {k: v for k, v in read_state_dict(weights).items()
             if not k.endswith(".num_batches_tracked")}  # fmt: skip
    _check_float(state, repr(os.fspath(weights)) if isinstance(weights, str | os.PathLike)
                 else "the mapping")
    model = create(name, **options)
    layout = torch_names.layout_for(model)
    file_classes = _head_classes(layout, state) if layout.classifier else None
    if num_classes is None:
        num_classes = file_classes
    if num_classes is not None:
        model = create(name, num_classes=num_classes, **options)
    reinit_head = layout.classifier and num_classes != file_classes
    entries, abstract, dropped = _plan(name, model, state, reinit_head)
    flat = {k: jnp.asarray(torch_names.from_torch(e, state[e.torch_key]), abstract[k].dtype)
            for k, e in entries.items()}  # fmt: skip
    fresh = sorted(k for k in abstract if k not in flat)
    if fresh:
        init_flat = traverse_util.flatten_dict(_init(model, key))
        flat.update({k: init_flat[k] for k in fresh})
    if fresh or dropped:
        modules = sorted({k[1] for k in fresh})  # top-level modules: "head", "decoder1", ...
        logger.info(
            "from_torchvision(%r): re-initialised %s; dropped from the weights: %s",
            name, ", ".join(modules) or "nothing", ", ".join(dropped) or "nothing",
        )  # fmt: skip
    return model, traverse_util.unflatten_dict(flat)


def to_torchvision(
    name_or_model: str | nn.Module, variables: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """torchvision's state dict (without `num_batches_tracked`, which torch's `load_state_dict`
    fills in) of a zoo model's variables; the inverse of `from_torchvision`, bit for bit.

    `name_or_model`: a registered name (its default options) or the module itself. For
    `unet_resnet*`, the encoder's weights as a torchvision ResNet without `fc`.
    """
    if isinstance(name_or_model, str):
        model = create(name_or_model)
    elif isinstance(name_or_model, nn.Module):
        model = name_or_model
    else:
        raise TypeError(f"name_or_model: expected a model name or module; got {name_or_model!r}")
    if not isinstance(variables, Mapping) or "params" not in variables:
        raise ValueError("variables: expected a mapping with 'params' (and 'batch_stats')")
    flat = traverse_util.flatten_dict(dict(variables))
    layout = torch_names.layout_for(model)
    shapes = {k: tuple(np.shape(v)) for k, v in flat.items()}
    return {
        e.torch_key: torch_names.to_torch(e, flat[k])
        for k, e in torch_names.entries(layout, shapes).items()
    }
