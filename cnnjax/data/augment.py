"""Augmentation specs: what a config writes, parsed into op instances.

Declarative specs, see `parse_spec`:
  "random_crop(padding=4)|hflip"
  ["hflip", ("affine", {"degrees": 10}), {"op": "mixup", "alpha": 0.2}]
  "crop_flip"  (a preset name, see `PRESETS`)

Op names are looked up in `cnnjax.data.transforms.AUGMENTATIONS` and preset names in
`PRESETS`, both `cnnjax.registry.Registry`s: a new op is one `@AUGMENTATIONS.register("name")`
definition, a new preset one `PRESETS.register("name")("spec")` line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# geometric and mixing register their ops in AUGMENTATIONS when imported
from cnnjax.data import geometric, mixing  # noqa: F401
from cnnjax.data.info import DataInfo, NameList
from cnnjax.data.transforms import AUGMENTATIONS, Op
from cnnjax.registry import Registry, parse_call

__all__ = ["OP_NAMES", "PRESETS", "Spec", "build_ops", "parse_spec"]

PRESETS: Registry[str] = Registry("augment preset")
PRESETS.register("none")("")
PRESETS.register("flip")("hflip")
PRESETS.register("crop_flip")("random_crop(padding=4)|hflip")
PRESETS.register("inception")("random_resized_crop(size=224)|hflip")
PRESETS.register("inception_color")(
    "random_resized_crop(size=224)|hflip|brightness(max_delta=0.2)|contrast(lower=0.8, upper=1.2)"
)
PRESETS.register("mnist")("affine(degrees=10, translate=0.1, scale=(0.9, 1.1))")
PRESETS.register("segmentation")("hflip|vflip|affine(degrees=15, scale=(0.9, 1.1))")

OP_NAMES: Sequence[str] = NameList(AUGMENTATIONS)
"""The registered op names (a live view: ops registered later are listed too)."""

Spec = str | Sequence[str | tuple[str, Mapping[str, Any]] | Mapping[str, Any]] | None



def parse_spec(spec: Spec) -> list[tuple[str, dict[str, Any]]]:
    """Normalise an augmentation spec to [(op name, kwargs), ...], expanding presets."""
    if spec is None:
        return []
    if isinstance(spec, str):
        items: list[Any] = [s for s in spec.split("|") if s.strip()]
    elif isinstance(spec, Sequence):
        items = list(spec)
    else:
        raise TypeError(f"augment={spec!r}: expected a str, a sequence of ops or None")
    parsed: list[tuple[str, dict[str, Any]]] = []
    for item in items:
        if isinstance(item, str):
            name, kwargs = parse_call(item, "augment op")
        elif isinstance(item, Mapping):
            kwargs = dict(item)
            name = kwargs.pop("op", None) or kwargs.pop("name", None)
        elif isinstance(item, tuple | list) and len(item) == 2 and isinstance(item[1], Mapping):
            name, kwargs = item[0], dict(item[1])
        else:
            raise TypeError(
                f"augment item {item!r}: expected 'name(k=v)', (name, kwargs) "
                "or {'op': name, ...}"
            )
        if name in PRESETS and not kwargs:
            parsed.extend(parse_spec(PRESETS.get(name)))
            continue
        if name not in AUGMENTATIONS:
            raise ValueError(
                f"augment op {name!r}: unknown; expected one of {tuple(AUGMENTATIONS)} or a "
                f"preset {tuple(PRESETS)}"
            )
        parsed.append((name, kwargs))
    return parsed


def build_ops(spec: Spec, info: DataInfo | None = None) -> tuple[list[Op], list[Op]]:
    """Instantiate a spec: (per-example ops, batch-level ops), in order.

    `info` supplies the data set's mean colour to `cutout` and is used to reject mixup/cutmix
    on segmentation data.
    """
    example_ops: list[Op] = []
    batch_ops: list[Op] = []
    for name, kwargs in parse_spec(spec):
        if name == "cutout" and info is not None and "fill" not in kwargs:
            kwargs = {**kwargs, "mean_fill": tuple(round(255 * m) for m in info.mean)}
        try:
            op = AUGMENTATIONS.get(name)(**kwargs)
        except TypeError as error:
            raise TypeError(f"augment op {name!r} with {kwargs}: {error}") from error
        if op.batch_level:
            if info is not None and info.task != "classification":
                raise ValueError(f"augment op {name!r}: only for classification, not {info.task}")
            batch_ops.append(op)
        else:
            if batch_ops:
                raise ValueError(f"augment op {name!r}: per-example ops must precede mixup/cutmix")
            example_ops.append(op)
    return example_ops, batch_ops

