"""`workdir/tracker_runs.json`: the id of each tracker's run, so that a resumed training run
continues the same MLflow / W&B run instead of starting another.

    {"mlflow": {"run_id": "...", "tracking_uri": "...", "experiment_id": "..."},
     "wandb": {"run_id": "...", "project": "..."}}

Written atomically by process 0 when a tracker run is created; a fresh start
(`config.fresh_start`) moves it aside with the rest of the history, so that run gets new ids.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cnnjax.workdir_layout import TRACKER_RUNS_FILE

__all__ = ["load_run", "save_run"]

log = logging.getLogger("cnnjax.train")


def _read(workdir: Path) -> dict[str, Any]:
    path = workdir / TRACKER_RUNS_FILE
    if not path.exists():
        return {}
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        log.warning("%s is unreadable (%s): the trackers start new runs", path, e)
        return {}
    return value if isinstance(value, dict) else {}


def load_run(workdir: str | os.PathLike, tracker: str) -> dict[str, Any] | None:
    """The saved run of `tracker` in `workdir` (a dict with at least `run_id`), or None."""
    entry = _read(Path(workdir)).get(tracker)
    if isinstance(entry, dict) and isinstance(entry.get("run_id"), str) and entry["run_id"]:
        return entry
    return None


def save_run(workdir: str | os.PathLike, tracker: str, entry: Mapping[str, Any]) -> None:
    """Record `tracker`'s run (`entry` holds `run_id`) in `workdir/tracker_runs.json`."""
    workdir = Path(workdir)
    runs = _read(workdir)
    runs[tracker] = dict(entry)
    path = workdir / TRACKER_RUNS_FILE
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(runs, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
