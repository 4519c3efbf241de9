"""`metrics.jsonl`: one JSON object per logged row, the run's own record (tracker "jsonl").

Each line is `{"step", "split", **fields, **metrics}` (fields such as `epoch`, metrics such as
`loss`, `accuracy`, `learning_rate`, `images_per_s`). On resume the lines beyond the restored
step are dropped first, so the file equals that of a run that was never interrupted. Resume,
the training-curve plot and `experiments.sweep.results` read it, so every run writes it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from cnnjax import workdir_layout as layout
from cnnjax.train.runner.trackers.base import MetricWriter, TrackerContext
from cnnjax.train.runner.trackers.registry import register_tracker

__all__ = ["METRICS_FILE", "JsonlWriter", "json_value", "read_metrics", "truncate_metrics_file"]

log = logging.getLogger("cnnjax.train")

METRICS_FILE = layout.METRICS_FILE


def json_value(value: Any) -> Any:
    """A metric value as JSON holds it: arrays as lists, NaN/Inf as None."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/Inf: null (e.g. the IoU of a class that never occurs)
    return value


def _parse_row(raw: bytes) -> tuple[dict[str, Any] | None, str]:
    """(row, "") for a metrics line holding a JSON object with an int step, else (None, why)."""
    try:
        row = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        return None, f"not UTF-8 (byte {e.start})"
    except json.JSONDecodeError as e:
        return None, f"not JSON ({e.msg})"
    if not isinstance(row, dict):
        return None, f"a JSON {type(row).__name__}, not an object"
    step = row.get("step")
    if isinstance(step, bool) or not isinstance(step, int):
        return None, f"no int step (step={step!r})"
    return row, ""


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All complete rows of a metrics file (JSON objects with an int step); a torn or damaged
    line is skipped."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    if not path.exists():
        return []
    rows = [_parse_row(line)[0] for line in path.read_bytes().splitlines()]
    return [r for r in rows if r is not None]


def truncate_metrics_file(path: str | os.PathLike, last_step: int | None) -> int:
    """Keep only the lines with `step <= last_step` (none if `last_step` is None); atomic.

    Also drops a torn last line left by a kill in the middle of a write. Any other damaged line
    (not UTF-8, not JSON, not an object with an int step) is dropped too, but never silently:
    the file as it was is first copied to `metrics.jsonl.damaged-<UTC time>` and a warning names
    the lines. Returns the lines dropped.
    """
    path = Path(path)
    if not path.exists():
        return 0
    data = path.read_bytes()
    lines = data.splitlines()
    kept, damaged = [], []
    for i, line in enumerate(lines):
        row, why = _parse_row(line)
        if row is None:
            torn = i == len(lines) - 1 and not data.endswith(b"\n")
            if not torn and line.strip():
                damaged.append(f"line {i + 1}: {why}")
            continue
        if last_step is not None and row["step"] <= last_step:
            kept.append(line)
    if damaged:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        backup = path.with_name(f"{path.name}.damaged-{stamp}")
        backup.write_bytes(data)
        log.warning("%s has damaged lines (%s%s); they are dropped from it, and the file as it "
                    "was is kept in %s", path, "; ".join(damaged[:5]),
                    " ..." if len(damaged) > 5 else "", backup)
    if len(kept) != len(lines):
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_bytes(b"".join(line + b"\n" for line in kept))
        os.replace(tmp, path)
    return len(lines) - len(kept)


class JsonlWriter(MetricWriter):
    """Appends rows to `workdir/metrics.jsonl`; `resume_step`: the step the run restored
    (None: a fresh run), whose later lines are dropped first."""

    def __init__(self, workdir: str | os.PathLike, *, resume_step: int | None = None) -> None:
        self.path = Path(workdir) / METRICS_FILE
        truncate_metrics_file(self.path, resume_step)
        self._file: TextIO | None = self.path.open("a")

    def write_row(self, step: int, split: str, row: Mapping[str, Any]) -> None:
        assert self._file is not None, "JsonlWriter used after close()"
        self._file.write(json.dumps(dict(row)) + "\n")
        self._file.flush()

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        """Scalars without a split: one row `{"step", **scalars}`."""
        self.write_row(step, "", {"step": int(step), **scalars})

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@register_tracker("jsonl")
def open_jsonl(ctx: TrackerContext) -> MetricWriter:
    """metrics.jsonl, cut back to the restored step."""
    return JsonlWriter(ctx.workdir, resume_step=ctx.resume_step)
