"""Training curves from `metrics.jsonl` files: one axes per metric, runs and splits overlaid."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from cnnjax.viz._common import PathLike, finish

Records = list[dict[str, Any]]

#: Keys of a metrics record that are coordinates or labels, not metrics.
NON_METRIC_KEYS = frozenset({"step", "epoch", "split", "time", "wall_time", "timestamp"})
_SPLIT_STYLES = {"train": "-", "val": "--", "valid": "--", "validation": "--", "test": ":"}


def load_metrics(path: PathLike) -> Records:
    """The records of a JSON-lines file (one JSON object per line; blank lines skipped).

    Raises FileNotFoundError for a missing file and ValueError naming the line of a
    malformed one.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    records: Records = []
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(f"{path}:{lineno} is not UTF-8 text (byte {err.start})"
                                 ) from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno} is not valid JSON: {err}") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{lineno} must hold a JSON object, got {record!r}")
            records.append(record)
    return records


def _is_records(x: Any) -> bool:
    return isinstance(x, Sequence) and not isinstance(x, str | bytes) and (
        len(x) == 0 or all(isinstance(r, Mapping) for r in x)
    )


def _one_run(run: Any, where: str) -> Records:
    if isinstance(run, str | os.PathLike):
        return load_metrics(run)
    if _is_records(run):
        return [dict(r) for r in run]
    raise TypeError(
        f"{where} must be a path to a metrics.jsonl file (or its run directory) or a list "
        f"of metric dicts, got {type(run).__name__} {run!r:.80}"
    )


def _runs(runs: Any, labels: Sequence[str] | None) -> list[tuple[str, Records]]:
    """Normalises every accepted spelling of `runs` to ``[(label, records), ...]``."""
    if isinstance(runs, Mapping):
        items = [(str(k), _one_run(v, f"runs[{k!r}]")) for k, v in runs.items()]
    elif isinstance(runs, str | os.PathLike) or _is_records(runs):
        items = [(_default_label(runs, 0), _one_run(runs, "runs"))]
    elif isinstance(runs, Sequence) and not isinstance(runs, bytes):
        items = [(_default_label(r, i), _one_run(r, f"runs[{i}]")) for i, r in enumerate(runs)]
    else:
        raise TypeError(
            "runs must be a path, a list of metric dicts, a list of those, or a mapping "
            f"label -> path/records, got {type(runs).__name__} {runs!r:.80}"
        )
    if not items:
        raise ValueError("runs is empty: give at least one metrics.jsonl path or record list")
    if labels is not None:
        if len(labels) != len(items):
            raise ValueError(f"labels must have one entry per run ({len(items)}), got {labels!r}")
        items = [(str(lab), recs) for lab, (_, recs) in zip(labels, items, strict=True)]
    return items


def _default_label(run: Any, i: int) -> str:
    if isinstance(run, str | os.PathLike):
        p = Path(run)
        return p.parent.name if p.name == "metrics.jsonl" and p.parent.name else p.name
    return f"run {i}"


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def metric_names(records: Records) -> list[str]:
    """Numeric keys of the records other than `NON_METRIC_KEYS`, in order of first use."""
    names: dict[str, None] = {}
    for r in records:
        for k, v in r.items():
            if k not in NON_METRIC_KEYS and _is_number(v):
                names.setdefault(k, None)
    return list(names)


def plot_training_curves(
    runs: Any,
    metrics: str | Sequence[str] | None = None,
    *,
    labels: Sequence[str] | None = None,
    x: str = "step",
    splits: Sequence[str] | None = None,
    logy: Sequence[str] = (),
    title: str | None = None,
    path: PathLike | None = None,
) -> Figure:
    """Curves of each metric against `x` ("step" or "epoch"), one axes per metric.

    runs: a ``metrics.jsonl`` path (or the run directory holding it), a list of records
        (dicts with `x`, "split" and metric values, as the trainer writes them), a list of
        several such runs, or a mapping ``label -> path or records`` to overlay runs.
    metrics: names to plot (default: every numeric key but step/epoch/split/time).
    splits: which values of "split" to draw (default all; records without one count as
        "train"). Each run has one colour; splits differ by line style (train solid,
        val dashed, test dotted). Every line holds exactly the recorded points, in file order
        sorted by `x`. logy: metrics drawn on a log scale (e.g. "loss").
    """
    items = _runs(runs, labels)
    if metrics is None:
        all_records = [r for _, recs in items for r in recs]
        metrics = metric_names(all_records)
        if not metrics:
            raise ValueError("no numeric metric found in the records: nothing to plot")
    elif isinstance(metrics, str):
        metrics = [metrics]
    metrics = list(metrics)
    fig = Figure(figsize=(4.2 * len(metrics), 3.2))
    axes = [fig.add_subplot(1, len(metrics), i + 1) for i in range(len(metrics))]
    colors = [f"C{i % 10}" for i in range(len(items))]
    for ax, metric in zip(axes, metrics, strict=True):
        drawn = 0
        for (label, records), color in zip(items, colors, strict=True):
            by_split: dict[str, list[tuple[float, float]]] = {}
            for i, r in enumerate(records):
                value = r.get(metric)
                if not _is_number(value):
                    continue
                split = str(r.get("split", "train"))
                if splits is not None and split not in splits:
                    continue
                xv = r.get(x, i)
                if not _is_number(xv):
                    raise ValueError(f"record {i} of run {label!r} has non-numeric {x}={xv!r}")
                by_split.setdefault(split, []).append((float(xv), float(value)))
            for split, points in by_split.items():
                points.sort(key=lambda p: p[0])
                xs, ys = zip(*points, strict=True)
                name = split if len(items) == 1 else f"{label} ({split})"
                style = _SPLIT_STYLES.get(split, "-.")
                marker = "o" if len(points) <= 30 else None
                ax.plot(xs, ys, style, color=color, label=name, marker=marker, markersize=3)
                drawn += 1
        if drawn == 0:
            raise ValueError(
                f"metric {metric!r} has no numeric value in any run (available: "
                f"{metric_names([r for _, recs in items for r in recs])})"
            )
        if metric in logy:
            ax.set_yscale("log")
        ax.set_xlabel(x)
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return finish(fig, path)


def final_value(records: Records, metric: str, split: str = "val") -> float:
    """The last recorded value of `metric` for `split` (NaN when never recorded)."""
    for r in reversed(records):
        if str(r.get("split", "train")) == split and _is_number(r.get(metric)):
            return float(r[metric])
    return math.nan
