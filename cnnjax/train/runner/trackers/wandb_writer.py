"""Weights & Biases tracker (`config.trackers` "wandb"; `pip install 'cnnjax[trackers]'`).

Options (`config.tracker_options.wandb`): `project` (None: "cnnjax"), `entity`, `name` (None:
the workdir's folder name), `mode` ("online" | "offline" | "disabled"; None: $WANDB_MODE, else
W&B's default), `dir` (None: the workdir; W&B writes its `wandb/` run folders there). Scalars
go to `run.log(..., step=step)` as `<split>/<name>`, the config and run metadata to
`run.config`, config.json and the plots to the run's files.

Resume: the run id is kept in `workdir/tracker_runs.json` and reused with `resume="allow"`, so
a resumed training run continues the same W&B run (offline: `wandb sync` merges its folders).
W&B ignores steps below the run's current one, so points logged after the last checkpoint
are not duplicated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cnnjax.train.runner.trackers.base import MetricWriter, TrackerContext
from cnnjax.train.runner.trackers.registry import register_tracker
from cnnjax.train.runner.trackers.run_ids import load_run, save_run

__all__ = ["WandbWriter"]


class WandbWriter(MetricWriter):
    """One W&B run per training run (continued on resume)."""

    def __init__(self, ctx: TrackerContext) -> None:
        import wandb  # optional dependency: imported only when used

        opts = dict(ctx.options)
        project = opts.get("project") or "cnnjax"
        saved = load_run(ctx.workdir, "wandb")
        self.run = wandb.init(
            project=project, entity=opts.get("entity"),
            id=saved["run_id"] if saved is not None else None,  # None: W&B makes one
            resume="allow", name=opts.get("name") or ctx.run_name, mode=opts.get("mode"),
            dir=str(opts.get("dir") or ctx.workdir), reinit="create_new",
        )
        if saved is None:
            save_run(ctx.workdir, "wandb", {"run_id": self.run.id, "project": project})

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        self.run.log({k: v for k, v in scalars.items() if v is not None}, step=int(step))

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        self.run.config.update(dict(hparams), allow_val_change=True)

    def write_artifacts(self, paths: Sequence[Path]) -> None:
        for path in paths:
            self.run.save(str(path), base_path=str(path.parent), policy="now")

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


@register_tracker("wandb", options=("project", "entity", "name", "mode", "dir"),
                  package="wandb")
def open_wandb(ctx: TrackerContext) -> MetricWriter:
    """The W&B writer of a run (module docstring)."""
    return WandbWriter(ctx)
