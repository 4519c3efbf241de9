"""Validation accuracy against step of several runs on one figure (the transfer experiment).

    python -m experiments.transfer_plot runs/fmnist_scratch runs/fmnist_probe \
        runs/fmnist_finetune --out=docs/transfer_fashion_mnist.png

Each workdir's `metrics.jsonl` is read (its "val" rows); a curve is labelled by the workdir's
name, or by `--labels=a,b,c`. Exit code 2 for a workdir without validation rows.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from cnnjax.train.runner.reporting import read_metrics

__all__ = ["main", "plot_curves", "val_curve"]


def val_curve(workdir: str | Path, metric: str = "accuracy") -> tuple[list[int], list[float]]:
    """(steps, values) of `metric` on the validation rows of a run's metrics.jsonl."""
    rows = [r for r in read_metrics(workdir) if r.get("split") == "val" and metric in r]
    if not rows:
        raise ValueError(f"workdir={str(workdir)!r}: no validation {metric!r} in metrics.jsonl")
    return [int(r["step"]) for r in rows], [float(r[metric]) for r in rows]


def plot_curves(workdirs: Sequence[str | Path], labels: Sequence[str], out: str | Path,
                metric: str = "accuracy", title: str = "") -> Path:
    """Write a PNG of the validation `metric` of each workdir against step; returns its path."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=100)
    for workdir, label in zip(workdirs, labels, strict=True):
        steps, values = val_curve(workdir, metric)
        ax.plot(steps, values, marker="o", markersize=3, label=f"{label} ({values[-1]:.1%})")
    ax.set_xlabel("step")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdirs", nargs="+")
    parser.add_argument("--out", required=True)
    parser.add_argument("--labels", default=None, help="comma-separated, one per workdir")
    parser.add_argument("--metric", default="accuracy")
    parser.add_argument("--title", default="")
    args = parser.parse_args(argv)
    labels = args.labels.split(",") if args.labels else [Path(w).name for w in args.workdirs]
    if len(labels) != len(args.workdirs):
        parser.error(f"--labels={args.labels!r}: expected {len(args.workdirs)} labels")
    try:
        print(f"wrote {plot_curves(args.workdirs, labels, args.out, args.metric, args.title)}")
    except ValueError as e:
        print(f"transfer_plot: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
