"""Plots of a sweep: each metric against each setting field (error bars: 95% CI over seeds),
and training curves as mean ± std bands over the seeds of each setting.

Used by `experiments.sweep.results.write_results`; inputs are its RunResults (`runs`) and
summary rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

SKIPPED_CURVES = ("images_per_s", "learning_rate")  # timing, and the schedule (not a result)


def _label(fields: Sequence[str], values: Mapping[str, Any]) -> str:
    return ", ".join(f"{f}={values.get(f)}" for f in fields) or "all runs"


def _as_number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def plot_metric_vs_field(summary: Sequence[Mapping[str, Any]], field: str,
                         others: Sequence[str], metric: str, path: Path) -> Path:
    """`metric` mean against `field`, one line per combination of the `others` fields,
    error bars = the 95% confidence interval (none where n < 2)."""
    fig = Figure(figsize=(5.5, 4))
    ax = fig.add_subplot()
    xs_all = [s[field] for s in summary]
    numeric = all(_as_number(x) is not None for x in xs_all)
    categories = sorted({json.dumps(x) for x in xs_all})
    lines: dict[str, list[Mapping[str, Any]]] = {}
    for s in summary:
        lines.setdefault(_label(others, s), []).append(s)
    for label, members in lines.items():
        members = sorted(members, key=lambda s: (
            _as_number(s[field]) if numeric else categories.index(json.dumps(s[field]))))
        x = [(_as_number(s[field]) if numeric else categories.index(json.dumps(s[field])))
             for s in members]
        y = np.array([s[f"{metric}_mean"] for s in members], dtype=float)
        lo = np.array([s[f"{metric}_ci_lo"] for s in members], dtype=float)
        hi = np.array([s[f"{metric}_ci_hi"] for s in members], dtype=float)
        err = np.nan_to_num(np.stack([y - lo, hi - y]), nan=0.0)
        ax.errorbar(x, y, yerr=err, marker="o", capsize=4, label=label if others else None)
    positive = numeric and all(_as_number(x) > 0 for x in xs_all)
    if positive and max(map(_as_number, xs_all)) >= 10 * min(map(_as_number, xs_all)):
        ax.set_xscale("log")
    if not numeric:
        ax.set_xticks(range(len(categories)), [c.strip('"') for c in categories])
    ax.set_xlabel(field)
    ax.set_ylabel(f"{metric} (mean, 95% CI)")
    ax.grid(alpha=0.3)
    if others:
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def _band(records: Sequence[Sequence[Mapping[str, Any]]], split: str, metric: str
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, mean, std) of `metric` on `split` at the steps every run logged."""
    series = [{int(r["step"]): float(r[metric]) for r in rs
               if r.get("split") == split and metric in r} for rs in records]
    steps = sorted(set.intersection(*(set(s) for s in series))) if series else []
    values = np.array([[s[t] for t in steps] for s in series], dtype=float)
    std = values.std(axis=0, ddof=1) if len(series) > 1 else np.zeros(len(steps))
    return np.array(steps), values.mean(axis=0) if steps else np.array([]), std


def plot_curves(runs: Sequence[Any], fields: Sequence[str], split: str, path: Path
                ) -> Path | None:
    """One axes per metric logged on `split`; per setting, the mean over its seeds with a
    ± std band (at the steps all its seeds logged). None if nothing was logged on `split`."""
    groups: dict[str, list[Any]] = {}
    for r in runs:
        groups.setdefault(_label(fields, r.config), []).append(r)
    metrics = sorted({k for r in runs for row in r.records if row.get("split") == split
                      for k, v in row.items() if isinstance(v, float)} - {"epoch",
                                                                          *SKIPPED_CURVES})
    if not metrics:
        return None
    cols = min(3, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig = Figure(figsize=(4.5 * cols, 3.5 * rows))
    for i, metric in enumerate(metrics):
        ax = fig.add_subplot(rows, cols, i + 1)
        for label, members in groups.items():
            steps, mean, std = _band([m.records for m in members], split, metric)
            if not len(steps):
                continue
            (line,) = ax.plot(steps, mean, label=f"{label} (n={len(members)})")
            ax.fill_between(steps, mean - std, mean + std, alpha=0.25, color=line.get_color())
        ax.set_title(f"{split} {metric} (mean ± std over seeds)", fontsize="small")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize="x-small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def write_plots(directory: Path, runs: Sequence[Any], summary: Sequence[Mapping[str, Any]],
                fields: Sequence[str], metrics: Sequence[str]) -> list[Path]:
    """All plots of a sweep under `directory`; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for field in fields:
        others = [f for f in fields if f != field]
        for metric in metrics:
            if metric.startswith("val_"):
                continue  # best_val_ and test_ are the results; val_ curves are below
            path = directory / f"{metric}_vs_{field}.png"
            written.append(plot_metric_vs_field(summary, field, others, metric, path))
    for split in ("train", "val"):
        path = plot_curves(runs, fields, split, directory / f"curves_{split}.png")
        if path is not None:
            written.append(path)
    return written
