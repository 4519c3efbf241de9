"""The metrics registry: every evaluation metric a task reports is a named entry, chosen with
`config.metrics` (None: the task's default, `DEFAULT_METRICS`), checked when the config is
prepared and listed in errors. Adding a metric is one decorated function (here, or in a file
listed in `config.imports`):

    @register_metric("balanced_accuracy", kind="classification", finalize=...)
    def balanced_accuracy(inputs): ...

A metric is a pure function of `MetricInputs` (the task's logits, targets and weights,
prepared once per batch) that returns `{pair name: (sum, count)}`; the step sums the pairs
over devices and batches (so metrics are exact whatever the batch split) and `finalize`
turns the sums into numbers. Without a `finalize`, a pair with a scalar sum is reported as
`sum / count` under its own name; an array sum (a per-class count, a confusion matrix) needs
the metric's `finalize(summed, **options) -> {name: float}`. Metrics that share a pair (the
segmentation metrics all read `confusion`) compute it once.

Options: a config entry is "name" or "name(option=literal, ...)" ("top_k_accuracy(k=3)"); the
options are the keyword arguments of the metric (and of its finalize).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from cnnjax.registry import Registry, origin_of, parse_call
from cnnjax.train.tasks.base import Pair, finalize_pairs

__all__ = ["DEFAULT_METRICS", "METRIC_KINDS", "METRIC_REGISTRIES", "MetricEntry",
           "MetricInputs", "check_metric_names", "metric_functions", "parse_metrics",
           "register_metric"]

METRIC_KINDS = ("classification", "binary", "segmentation")


@dataclasses.dataclass(frozen=True)
class MetricInputs:
    """What a metric sees of one batch, prepared by its task.

    Attributes:
      logits: classification (B, K) as the model gave them; binary (B, ...) float32;
        segmentation (B, *spatial, C) float32.
      target: classification int (B,) class indices (argmax of soft labels); binary float
        labels, the shape of `logits`; segmentation int (B, *spatial) in [0, C).
      weights: classification and binary (B,) (0 for padding rows); segmentation
        (B, *spatial) (0 for padding rows and ignored pixels).
      num_classes: K or C (1 for binary).
    """

    logits: jax.Array
    target: jax.Array
    weights: jax.Array
    num_classes: int


@dataclasses.dataclass(frozen=True)
class MetricEntry:
    """A registered metric: `pairs(inputs, **options)` and, for array sums, `finalize`."""

    pairs: Callable[..., dict[str, Pair]]
    finalize: Callable[..., dict[str, float]] | None = None

    @property
    def registry_origin(self) -> tuple[str, str] | None:
        return origin_of(self.pairs)


METRIC_REGISTRIES: dict[str, Registry[MetricEntry]] = {
    kind: Registry(f"{kind} metric") for kind in METRIC_KINDS}

DEFAULT_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "top5_accuracy"),
    "binary": ("accuracy", "exact_match"),
    "segmentation": ("pixel_accuracy", "mean_iou", "mean_dice"),
}
"""What each kind of task reports when `config.metrics` is None (what it always reported)."""


def register_metric(name: str, kind: str, *, finalize: Callable[..., dict[str, float]] | None
                    = None) -> Callable[[Callable[..., dict[str, Pair]]],
                                        Callable[..., dict[str, Pair]]]:
    """Decorator registering `pairs(inputs: MetricInputs, **options)` as metric `name` of the
    tasks of `kind` ("classification", "binary" or "segmentation")."""
    if kind not in METRIC_REGISTRIES:
        raise ValueError(f"register_metric({name!r}): kind={kind!r}; expected one of "
                         f"{METRIC_KINDS}")

    def add(pairs: Callable[..., dict[str, Pair]]) -> Callable[..., dict[str, Pair]]:
        METRIC_REGISTRIES[kind].register(name)(MetricEntry(pairs, finalize))
        return pairs

    return add


def _accepted(entry: MetricEntry) -> list[str]:
    """The options of a metric: the parameters of `pairs` after `inputs`, and of `finalize`
    after `summed`."""
    names = list(inspect.signature(entry.pairs).parameters)[1:]
    if entry.finalize is not None:
        names += [p for p in list(inspect.signature(entry.finalize).parameters)[1:]
                  if p not in names]
    return names


def _call(fn: Callable[..., Any], first: Any, options: Mapping[str, Any]) -> Any:
    """`fn(first, **the options fn takes)` (a metric's pairs and finalize share options)."""
    takes = list(inspect.signature(fn).parameters)[1:]
    return fn(first, **{k: v for k, v in options.items() if k in takes})


def _specs(specs: Any) -> tuple[str, ...]:
    if isinstance(specs, str):
        return (specs,)
    if not isinstance(specs, list | tuple) or not specs:
        raise ValueError(f"config.metrics={specs!r}; expected a non-empty tuple of metric "
                         "names such as ('accuracy', 'top_k_accuracy(k=3)'), or None")
    return tuple(specs)


def parse_metrics(specs: Any, kind: str) -> tuple[tuple[str, dict[str, Any]], ...]:
    """`config.metrics` for a task of `kind` as ((name, options), ...), each checked: a name
    in that kind's registry, options the metric takes, no name twice."""
    registry = METRIC_REGISTRIES[kind]
    out: list[tuple[str, dict[str, Any]]] = []
    for text in _specs(specs):
        if not isinstance(text, str):
            raise ValueError(f"config.metrics: {text!r} is not a metric name")
        name, options = parse_call(text, "metric")
        if name not in registry:
            raise ValueError(f"config.metrics: unknown {kind} metric {name!r}; expected names "
                             f"from {tuple(registry.names())}")
        accepted = _accepted(registry.get(name))
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise ValueError(f"config.metrics: {kind} metric {name!r}: unknown option(s) "
                             f"{unknown}; it takes {accepted}")
        if name in dict(out):
            raise ValueError(f"config.metrics names the metric {name!r} twice")
        out.append((name, options))
    return tuple(out)


def check_metric_names(specs: Any) -> None:
    """When the config is prepared (the task's kind may be known only from its data): each
    name must be a metric of some kind; `parse_metrics` checks the kind when the task is
    built."""
    if specs is None:
        return
    specs = _specs(specs)
    for text in specs:
        name = parse_call(text, "metric")[0] if isinstance(text, str) else text
        kinds = [k for k, r in METRIC_REGISTRIES.items() if name in r]
        if not kinds:
            listed = "; ".join(f"{k}: {', '.join(r.names())}"
                               for k, r in METRIC_REGISTRIES.items())
            raise ValueError(f"config.metrics: unknown metric {name!r}; expected names from "
                             f"({listed})")
        errors = []
        for kind in kinds:  # its options must suit at least one kind that has it
            try:
                parse_metrics((text,), kind)
            except ValueError as e:
                errors.append(e)
        if len(errors) == len(kinds):
            raise errors[0]
    if len(set(specs)) != len(specs):
        raise ValueError(f"config.metrics={specs!r} names a metric twice")


def _class_order(key: str) -> tuple[int, int, str]:
    """Sort key of a per-class name `metric/<class>`: numbered classes in number order."""
    suffix = key.rsplit("/", 1)[1]
    return (0, int(suffix), "") if suffix.isdigit() else (1, 0, suffix)


def _per_class_last(out: dict[str, float]) -> dict[str, float]:
    """Summary values first, then the per-class ones (`iou/0`, `dice/0`, `iou/1`, ...) class
    by class: the order rows had before metrics were registry entries."""
    summary = {k: v for k, v in out.items() if "/" not in k}
    per_class = sorted((k for k in out if "/" in k), key=_class_order)  # stable: iou before dice
    return {**summary, **{k: out[k] for k in per_class}}


def metric_functions(kind: str, specs: Any = None
                     ) -> tuple[Callable[[MetricInputs], dict[str, Pair]],
                                Callable[[Mapping[str, Pair]], dict[str, float]]]:
    """(pairs, finalize) of the metrics `specs` (None: `DEFAULT_METRICS[kind]`) of a task of
    `kind`. `pairs(inputs)` merges the metrics' pairs; `finalize(summed)` reports every
    scalar pair as sum / count (the loss too), then each metric's own finalize."""
    chosen = parse_metrics(DEFAULT_METRICS[kind] if specs is None else specs, kind)
    entries = [(METRIC_REGISTRIES[kind].get(name), options) for name, options in chosen]

    def pairs(inputs: MetricInputs) -> dict[str, Pair]:
        out: dict[str, Pair] = {}
        for entry, options in entries:
            for key, pair in _call(entry.pairs, inputs, options).items():
                out.setdefault(key, pair)  # a shared pair (confusion): XLA merges the copies
        return out

    def finalize(summed: Mapping[str, Pair]) -> dict[str, float]:
        out = finalize_pairs({k: v for k, v in summed.items() if np.ndim(v[0]) == 0})
        for entry, options in entries:
            if entry.finalize is not None:
                out.update(_call(entry.finalize, summed, options))
        return _per_class_last(out)

    return pairs, finalize
