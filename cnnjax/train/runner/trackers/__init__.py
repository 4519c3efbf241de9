"""Experiment trackers: where a run's metrics, parameters and plots go (`config.trackers`).

    config.trackers = ("jsonl", "tensorboard")          # the default
    config.trackers = ("jsonl", "tensorboard", "mlflow")
    config.tracker_options.mlflow.tracking_uri = "http://127.0.0.1:5000"

Every tracker is a `MetricWriter` (clu's shape, `base`) opened through the `TRACKERS`
registry (`registry`): "jsonl" (`metrics.jsonl`, always on), "tensorboard", and the optional
"mlflow" and "wandb" (`pip install 'cnnjax[trackers]'`, imported only when named). The run
holds one `MetricsWriter` (below), which builds each metrics row once and hands it to every
tracker. Only process 0 writes. A tracker that fails once the run is under way (a server
gone) is dropped with a warning (`Guarded`); metrics.jsonl never is. A resumed run continues
the same tracker runs (their ids are kept in `workdir/tracker_runs.json`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax

from cnnjax import workdir_layout as layout
from cnnjax.train.runner.trackers import mlflow_writer, wandb_writer  # noqa: F401  (registers them)
from cnnjax.train.runner.trackers.base import (
    Guarded,
    MetricWriter,
    MultiWriter,
    TrackerContext,
    scalars_of,
)
from cnnjax.train.runner.trackers.jsonl import (
    METRICS_FILE,
    JsonlWriter,
    json_value,
    read_metrics,
    truncate_metrics_file,
)
from cnnjax.train.runner.trackers.registry import (
    TRACKER_NAMES,
    TRACKERS,
    TrackerEntry,
    check_trackers,
    register_tracker,
    require_package,
    tracker_names,
)
from cnnjax.train.runner.trackers.tensorboard import TensorBoardWriter

__all__ = [
    "DEFAULT_TRACKERS",
    "METRICS_FILE",
    "TRACKERS",
    "TRACKER_NAMES",
    "JsonlWriter",
    "MetricWriter",
    "MetricsWriter",
    "MultiWriter",
    "TensorBoardWriter",
    "TrackerContext",
    "TrackerEntry",
    "check_trackers",
    "flatten",
    "open_writers",
    "read_metrics",
    "register_tracker",
    "run_artifacts",
    "run_params",
    "scalars_of",
    "truncate_metrics_file",
]

DEFAULT_TRACKERS = ("jsonl", "tensorboard")


class MetricsWriter(MultiWriter):
    """The run's metrics log: `write(step, split, metrics, **fields)` builds one row and hands
    it to every tracker. Only process 0 writes (elsewhere `enabled` is False and writes are
    dropped).

    `writers`: the trackers' writers (default: metrics.jsonl and TensorBoard for `workdir`,
    cut back to `resume_step`, the step the run restored; None for a fresh run).
    """

    def __init__(self, workdir: str | os.PathLike, *, resume_step: int | None = None,
                 writers: Sequence[MetricWriter] | None = None) -> None:
        self.path = Path(workdir) / METRICS_FILE
        self.enabled = jax.process_index() == 0
        if writers is None and self.enabled:
            writers = [JsonlWriter(workdir, resume_step=resume_step),
                       TensorBoardWriter(workdir, resume_step=resume_step)]
        super().__init__(writers if self.enabled else [])

    def write(self, step: int, split: str, metrics: Mapping[str, Any], **fields: Any
              ) -> dict[str, Any]:
        """Write one row: `{"step", "split", **fields, **metrics}` (JSON values: NaN and
        Inf as None); returns it."""
        row = {"step": int(step), "split": split, **fields, **metrics}
        row = {k: json_value(v) for k, v in row.items()}
        self.write_row(int(step), split, row)
        return row


def _options(config: Any, name: str) -> dict[str, Any]:
    groups = config.get("tracker_options") or {}
    options = groups.get(name) if hasattr(groups, "get") else None
    if options is None:
        return {}
    options = options.to_dict() if hasattr(options, "to_dict") else dict(options)
    return {k: v for k, v in options.items() if v is not None}


def open_writers(config: Any, workdir: str | os.PathLike, *, resume_step: int | None,
                 hparams: Mapping[str, Any] | None = None) -> MetricsWriter:
    """The `MetricsWriter` of a training run: one writer per name in `config.trackers`
    (opened in that order, each continuing its earlier run on resume), given `hparams`
    (`run_params`). Nothing is opened on processes other than 0."""
    names = tracker_names(config.get("trackers") or DEFAULT_TRACKERS)
    if jax.process_index() != 0:
        return MetricsWriter(workdir, writers=[])
    workdir = Path(workdir)
    writers: list[MetricWriter] = []
    try:
        for name in names:
            require_package(name)
            ctx = TrackerContext(workdir, resume_step, _options(config, name), workdir.name)
            writer = TRACKERS.get(name).open(ctx)  # failing to open stops the run, here
            writers.append(writer if name == "jsonl" else Guarded(name, writer))
    except BaseException:
        MultiWriter(writers).close()
        raise
    writer = MetricsWriter(workdir, writers=writers)
    if hparams:
        writer.write_hparams(hparams)
    return writer


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"optimizer": {"learning_rate": 0.1}} -> {"optimizer.learning_rate": 0.1}."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def run_params(config: Mapping[str, Any], meta: Mapping[str, Any]) -> dict[str, Any]:
    """The params a tracker records: the config flattened (`optimizer.learning_rate`, tuples
    as text), and from the run metadata the seed, library versions, git commit and device
    count (`run.seed`, `run.versions.jax`, `run.git.commit`, ...)."""
    params = flatten(config)
    run = {k: meta[k] for k in ("seed", "versions", "git", "process_count") if k in meta}
    run["device_count"] = len(meta.get("devices") or []) or None
    params.update(flatten(run, "run."))
    return {k: (v if isinstance(v, bool | int | float | str) else str(v))
            for k, v in params.items() if v is not None}


def run_artifacts(workdir: str | os.PathLike) -> list[Path]:
    """The files a tracker keeps with a completed run: config.json and the PNG plots the run
    wrote in its workdir."""
    workdir = Path(workdir)
    paths = [workdir / layout.CONFIG_FILE] if (workdir / layout.CONFIG_FILE).exists() else []
    return paths + sorted(workdir.glob("*.png"))
