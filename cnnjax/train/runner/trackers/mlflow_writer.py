"""MLflow tracker (`config.trackers` "mlflow"; `pip install 'cnnjax[trackers]'`).

Options (`config.tracker_options.mlflow`): `tracking_uri` (None: $MLFLOW_TRACKING_URI, else
MLflow's default), `experiment_name` (None: "cnnjax"; created when absent), `run_name` (None:
the workdir's folder name). Scalars go to the run as `<split>/<name>` at their step, the
config and run metadata as params, config.json and the plots as artifacts (plots under
`plots/`).

Resume: the run id is kept in `workdir/tracker_runs.json`, and a resumed training run
continues that MLflow run. MLflow's metric history is append-only, so the points a run logged
after its last checkpoint (before a kill) are not sent again: on resume the writer reads the
run's last step per metric and skips points at or before it (an exact resume recomputes the
same values). Params are immutable in MLflow: a param whose value changed on resume (e.g.
`num_train_steps`) is recorded as the tag `changed_on_resume.<name>` instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cnnjax.train.runner.trackers.base import MetricWriter, TrackerContext
from cnnjax.train.runner.trackers.registry import register_tracker
from cnnjax.train.runner.trackers.run_ids import load_run, save_run

__all__ = ["MlflowWriter"]

log = logging.getLogger("cnnjax.train")

MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value
_BATCH = 100  # params per log_batch call (MLflow's limit; metrics allow 1000)


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


class MlflowWriter(MetricWriter):
    """One MLflow run per training run (continued on resume), through `MlflowClient`."""

    def __init__(self, ctx: TrackerContext) -> None:
        from mlflow import MlflowClient  # optional dependency: imported only when used

        opts = dict(ctx.options)
        self.client = MlflowClient(opts.get("tracking_uri"))
        self.tracking_uri = self.client.tracking_uri
        self.logged: dict[str, int] = {}  # the last step already in the run, per metric
        saved = load_run(ctx.workdir, "mlflow")
        if saved is not None and saved.get("tracking_uri", self.tracking_uri) != self.tracking_uri:
            log.warning("the workdir's MLflow run %s is on %s, not %s: starting a new run",
                        saved["run_id"], saved.get("tracking_uri"), self.tracking_uri)
            saved = None
        if saved is not None:
            self.run_id = saved["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            self.logged = self._last_steps()
        else:
            name = opts.get("experiment_name") or "cnnjax"
            experiment = self.client.get_experiment_by_name(name)
            experiment_id = (experiment.experiment_id if experiment is not None
                             else self.client.create_experiment(name))
            run = self.client.create_run(experiment_id,
                                         run_name=opts.get("run_name") or ctx.run_name)
            self.run_id = run.info.run_id
            save_run(ctx.workdir, "mlflow", {"run_id": self.run_id, "tracking_uri":
                                             self.tracking_uri, "experiment_id": experiment_id})

    def _last_steps(self) -> dict[str, int]:
        """{metric: last logged step} of the run (read once, on resume)."""
        keys = self.client.get_run(self.run_id).data.metrics
        return {k: max((m.step for m in self.client.get_metric_history(self.run_id, k)),
                       default=-1) for k in keys}

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, int(step)) for k, v in scalars.items()
                   if v is not None and int(step) > self.logged.get(k, -1)]
        for chunk in _chunks(metrics, 1000):
            self.client.log_batch(self.run_id, metrics=chunk)

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        present = self.client.get_run(self.run_id).data.params
        new = {k: str(v)[:MAX_PARAM_LENGTH] for k, v in hparams.items()}
        params = [Param(k, v) for k, v in new.items() if k not in present]
        for chunk in _chunks(params, _BATCH):
            self.client.log_batch(self.run_id, params=chunk)
        for k, v in new.items():
            if k in present and present[k] != v:
                self.client.set_tag(self.run_id, f"changed_on_resume.{k}", v)

    def write_artifacts(self, paths: Sequence[Path]) -> None:
        for path in paths:
            self.client.log_artifact(self.run_id, str(path),
                                     artifact_path="plots" if path.suffix == ".png" else None)

    def close(self) -> None:
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, "FINISHED")
            self.run_id = None


@register_tracker("mlflow", options=("tracking_uri", "experiment_name", "run_name"),
                  package="mlflow")
def open_mlflow(ctx: TrackerContext) -> MetricWriter:
    """The MLflow writer of a run (module docstring)."""
    return MlflowWriter(ctx)
