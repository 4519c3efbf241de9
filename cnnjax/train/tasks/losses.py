"""Loss registries: the terms of `task.segmentation_loss` and `task.classification_loss`.

A loss spec is terms joined by "+", each "name" or "name(option=literal, ...)":
"ce", "dice", "ce+dice", "ce+dice(smooth=0.1)". The loss is the sum over the terms of
sum / count (global over devices, see `tasks.base`). Adding a loss, with its own options, is
one decorated function (here, or in a file listed in `config.imports`); its options are
checked against its signature when the config is prepared.

Segmentation terms: `term(logits, target, weights, valid, num_classes, **options)` of float32
logits (B, *spatial, C), int targets (B, *spatial) in range, per-pixel weights (B, *spatial)
(0 for ignored pixels and padding rows) and per-image `valid` (B,):

    @register_segmentation_loss("focal")
    def focal(logits, target, weights, valid, num_classes, gamma=2.0): ...

Classification terms: `term(logits, targets, valid, **options)` of float32 logits (B, K),
soft float32 targets (B, K) (one-hot, or mixup/cutmix mixtures) and `valid` (B,):

    @register_classification_loss("confidence_penalty")
    def confidence_penalty(logits, targets, valid, weight=0.1): ...
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from cnnjax.registry import NameList, Registry, parse_call
from cnnjax.train.tasks.base import Pair

__all__ = ["CLASSIFICATION_LOSSES", "CLASSIFICATION_LOSS_REGISTRY", "SEGMENTATION_LOSSES",
           "SEGMENTATION_LOSS_REGISTRY", "parse_loss", "register_classification_loss",
           "register_segmentation_loss"]

LossTerm = Callable[..., Pair]
SEGMENTATION_LOSS_REGISTRY: Registry[LossTerm] = Registry("segmentation loss")
SEGMENTATION_LOSSES: Sequence[str] = NameList(SEGMENTATION_LOSS_REGISTRY)
"""The registered segmentation loss terms (any "+" sum of them is a loss too)."""
CLASSIFICATION_LOSS_REGISTRY: Registry[LossTerm] = Registry("classification loss")
CLASSIFICATION_LOSSES: Sequence[str] = NameList(CLASSIFICATION_LOSS_REGISTRY)
"""The registered classification loss terms."""
_FIXED = ("logits", "target", "targets", "weights", "valid", "num_classes")


def register_segmentation_loss(name: str) -> Callable[[LossTerm], LossTerm]:
    """Decorator registering a segmentation loss term (module docstring) as `name`."""
    return SEGMENTATION_LOSS_REGISTRY.register(name)


def register_classification_loss(name: str) -> Callable[[LossTerm], LossTerm]:
    """Decorator registering a classification loss term (module docstring) as `name`."""
    return CLASSIFICATION_LOSS_REGISTRY.register(name)


def parse_loss(spec: str, defaults: dict[str, dict[str, Any]] | None = None,
               registry: Registry[LossTerm] = SEGMENTATION_LOSS_REGISTRY,
               ) -> tuple[tuple[str, dict[str, Any]], ...]:
    """The terms of a loss spec, [(name, options)], each checked: a name in `registry`,
    options its function takes, no term twice. `defaults`: options per term name, below the
    spec's."""
    kind, names = registry.kind, tuple(registry.names())
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"{kind} {spec!r}: expected terms joined by '+', e.g. 'ce'; terms: "
                         f"{names}")
    terms = []
    for text in spec.split("+"):
        name, options = parse_call(text, "loss term")
        if name not in registry:
            raise ValueError(f"{kind} {spec!r}: unknown term {name!r}; expected terms from "
                             f"{names} joined by '+'")
        fn = registry.get(name)
        accepted = [p for p in inspect.signature(fn).parameters if p not in _FIXED]
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise ValueError(f"{kind} term {name!r}: unknown option(s) {unknown}; "
                             f"it takes {accepted}")
        if name in dict(terms):
            raise ValueError(f"{kind} {spec!r} has the term {name!r} twice")
        merged = {k: v for k, v in (defaults or {}).get(name, {}).items() if k in accepted}
        terms.append((name, {**merged, **options}))
    return tuple(terms)


@register_segmentation_loss("ce")
def cross_entropy(logits: jax.Array, target: jax.Array, weights: jax.Array, valid: jax.Array,
                  num_classes: int) -> Pair:
    """Mean per-pixel cross-entropy over the counted pixels."""
    del valid, num_classes
    logp = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(logp, target[..., None], axis=-1)[..., 0]
    return jnp.sum(weights * nll), jnp.sum(weights)


@register_segmentation_loss("dice")
def soft_dice(logits: jax.Array, target: jax.Array, weights: jax.Array, valid: jax.Array,
              num_classes: int, smooth: float = 1.0) -> Pair:
    """Per image `1 - mean_c (2 sum(p t) + s) / (sum(p) + sum(t) + s)`, mean over images."""
    p = jax.nn.softmax(logits, axis=-1)
    t = jax.nn.one_hot(target, num_classes, dtype=jnp.float32)
    wc = weights[..., None]
    spatial = tuple(range(1, logits.ndim - 1))
    inter = jnp.sum(wc * p * t, axis=spatial)  # (B, C)
    denom = jnp.sum(wc * p, axis=spatial) + jnp.sum(wc * t, axis=spatial)
    dice = (2.0 * inter + smooth) / (denom + smooth)
    per_image = 1.0 - jnp.mean(dice, axis=-1)
    return jnp.sum(valid * per_image), jnp.sum(valid)


@register_classification_loss("ce")
def softmax_cross_entropy(logits: jax.Array, targets: jax.Array, valid: jax.Array,
                          label_smoothing: float = 0.0) -> Pair:
    """Mean softmax cross-entropy against (smoothed) soft targets:
    (1 - eps) * targets + eps / K."""
    if label_smoothing > 0.0:
        targets = (1.0 - label_smoothing) * targets + label_smoothing / logits.shape[-1]
    per_example = -jnp.sum(targets * jax.nn.log_softmax(logits, axis=-1), axis=-1)
    return jnp.sum(valid * per_example), jnp.sum(valid)
