"""The names of what a run keeps in its workdir, in one place (every module reads them here).

    WORKDIR/
      config.json            CONFIG_FILE: the resolved config (with imports, dataset_info)
      run_metadata.json      RUN_METADATA_FILE: one entry per start (git, versions, devices)
      metrics.jsonl          METRICS_FILE: one JSON object per logged row
      summary.json           SUMMARY_FILE: the final metrics of a completed run
      eval_<split>_<which>.json  eval_file(split, which): --mode=eval results
      checkpoints/           CHECKPOINT_DIR: Orbax steps
      corrupt_checkpoints/   CORRUPT_DIR: steps found corrupt, moved aside
      previous_runs/<time>/  PREVIOUS_RUNS_DIR: an earlier run's history (fresh_start)
      tensorboard/           TENSORBOARD_DIR: event files
      tracker_runs.json      TRACKER_RUNS_FILE: the MLflow / W&B run ids a resume continues
      wandb/                 WANDB_DIR: W&B's local run folders (config.trackers "wandb")
      predictions/           PREDICTIONS_DIR: --mode=predict's default output
      export/step_<n>/       EXPORT_DIR: --mode=export's default output

Nothing here depends on the rest of cnnjax, so every layer can use it.
"""

from __future__ import annotations

__all__ = [
    "CHECKPOINT_DIR",
    "CONFIG_FILE",
    "CORRUPT_DIR",
    "EXPORT_DIR",
    "METRICS_FILE",
    "PREDICTIONS_DIR",
    "PREVIOUS_RUNS_DIR",
    "RUN_METADATA_FILE",
    "SUMMARY_FILE",
    "TENSORBOARD_DIR",
    "TRACKER_RUNS_FILE",
    "WANDB_DIR",
    "eval_file",
]

CONFIG_FILE = "config.json"
RUN_METADATA_FILE = "run_metadata.json"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CHECKPOINT_DIR = "checkpoints"
CORRUPT_DIR = "corrupt_checkpoints"
PREVIOUS_RUNS_DIR = "previous_runs"
TENSORBOARD_DIR = "tensorboard"
TRACKER_RUNS_FILE = "tracker_runs.json"
WANDB_DIR = "wandb"
PREDICTIONS_DIR = "predictions"
EXPORT_DIR = "export"


def eval_file(split: str, which: str | int, weights: str = "") -> str:
    """`eval_<split>_<which>.json`: what `--mode=eval` writes for a split and checkpoint;
    `eval_<split>_<which>_<weights>.json` for a run with an EMA ("ema" or "raw" weights)."""
    return f"eval_{split}_{which}{'_' + weights if weights else ''}.json"
