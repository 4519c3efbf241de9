"""A fresh start over a workdir with history: the old history is moved aside, never deleted.

`move_history_aside(workdir)` moves what `cnnjax.checkpoint.workdir_history` counts as history
(`metrics.jsonl`, `corrupt_checkpoints/`, the entries of `checkpoints/`) and the files derived
from them (`summary.json`, `eval_*.json`, `tracker_runs.json`: the fresh run is a new tracker
run) into `workdir/previous_runs/<UTC time>/`, so that
`config.fresh_start=True` starts at step 0 with an empty metrics file while the earlier run
can still be inspected (or put back by hand).
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from cnnjax.checkpoint.workdir import CHECKPOINT_DIR, CORRUPT_DIR, METRICS_FILE
from cnnjax.workdir_layout import PREVIOUS_RUNS_DIR, SUMMARY_FILE, TRACKER_RUNS_FILE

__all__ = ["PREVIOUS_RUNS", "move_history_aside"]

PREVIOUS_RUNS = PREVIOUS_RUNS_DIR


def move_history_aside(workdir: str | os.PathLike) -> Path:
    """Move `workdir`'s history to a new `previous_runs/<UTC time>/` folder; return it.

    `checkpoints/` itself stays (an open checkpoint manager may own it); its entries move.
    """
    root = Path(workdir)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    dest = root / PREVIOUS_RUNS / stamp
    dest.mkdir(parents=True)
    names = [METRICS_FILE, CORRUPT_DIR, SUMMARY_FILE, TRACKER_RUNS_FILE,
             *(p.name for p in root.glob("eval_*.json"))]
    for name in names:
        if (root / name).exists():
            os.replace(root / name, dest / name)
    checkpoints = root / CHECKPOINT_DIR
    if checkpoints.is_dir() and any(checkpoints.iterdir()):
        (dest / CHECKPOINT_DIR).mkdir()
        for entry in checkpoints.iterdir():
            os.replace(entry, dest / CHECKPOINT_DIR / entry.name)
    elif checkpoints.exists() and not checkpoints.is_dir():
        os.replace(checkpoints, dest / CHECKPOINT_DIR)
    return dest
