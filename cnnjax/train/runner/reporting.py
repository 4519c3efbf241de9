"""Run reporting: progress on the terminal, and (from `cnnjax.train.runner.trackers`) the
metrics log.

- `MetricsWriter`, `read_metrics`, `truncate_metrics_file` live in `cnnjax.train.runner.trackers`
  (metrics.jsonl, TensorBoard, MLflow, W&B behind one writer interface) and are re-exported
  here for the modules and scripts that import them from this one.
- `Progress` is a tqdm bar with loss/metric/images-per-second when stdout is a terminal, and
  plain periodic log lines otherwise (CI, log files).
Only process 0 writes (multi-host runs).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Mapping
from typing import Any, Self, TextIO

import jax
from tqdm.auto import tqdm

from cnnjax.train.runner.trackers import (
    METRICS_FILE,
    MetricsWriter,
    flatten,
    read_metrics,
    truncate_metrics_file,
)

__all__ = [
    "METRICS_FILE",
    "TIMING_FIELDS",
    "MetricsWriter",
    "Progress",
    "flatten",
    "format_metrics",
    "read_metrics",
    "truncate_metrics_file",
    "warn_config_changes",
]

log = logging.getLogger("cnnjax.train")

# Fields that measure wall time: they differ between two otherwise identical runs.
TIMING_FIELDS = ("images_per_s", "steps_per_s", "elapsed_s")


class _ClosedOnExit:
    """`with` support for the writers below: the block's end calls their `close()`."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def format_metrics(metrics: Mapping[str, Any], *, digits: int = 4) -> str:
    """`loss=0.1234 accuracy=0.9876 images_per_s=1234` (scalars only, compact)."""
    parts = []
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if isinstance(value, int) or name in ("images_per_s", "steps_per_s"):
            parts.append(f"{name}={value:.0f}" if isinstance(value, float) else f"{name}={value}")
        elif name == "learning_rate":
            parts.append(f"lr={value:.3g}")
        else:
            parts.append(f"{name}={value:.{digits}g}")
    return " ".join(parts)


def process_age_s() -> float | None:
    """Seconds since this process started (Linux `/proc`; None elsewhere): what a user waits
    from typing the command, imports included."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def _format_seconds(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class Progress(_ClosedOnExit):
    """Training progress: a tqdm bar on a terminal, plain log lines otherwise.

    `advance(step)` moves the bar (cheap, no device sync); `report(step, metrics)` shows the
    latest metrics (on the bar, or as one line `train step 120/500 (24%) loss=... eta 1m05s`).
    """

    def __init__(
        self,
        total_steps: int,
        initial_step: int = 0,
        *,
        desc: str = "train",
        stream: TextIO | None = None,
        leave: bool = True,
    ) -> None:
        self.total = int(total_steps)
        self.step = int(initial_step)
        self.desc = desc
        self.stream = stream if stream is not None else sys.stdout
        self.enabled = jax.process_index() == 0
        use_bar = bool(getattr(self.stream, "isatty", lambda: False)())
        self._bar = None
        self._start_time = time.perf_counter()
        self._start_step = self.step
        if self.enabled and use_bar:
            self._bar = tqdm(
                total=self.total, initial=self.step, desc=desc, file=self.stream,
                dynamic_ncols=True, unit="step", leave=leave,
            )

    def advance(self, step: int) -> None:
        if self._bar is not None and step > self.step:
            self._bar.update(step - self.step)
        self.step = step

    def report(self, step: int, metrics: Mapping[str, Any]) -> None:
        self.advance(step)
        if not self.enabled:
            return
        text = format_metrics(metrics)
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=True)
            return
        done = step - self._start_step
        elapsed = time.perf_counter() - self._start_time
        eta = elapsed / done * (self.total - step) if done > 0 else float("nan")
        pct = 100.0 * step / self.total if self.total else 100.0
        eta_text = _format_seconds(eta) if math.isfinite(eta) else "?"
        self.write(f"{self.desc} step {step}/{self.total} ({pct:.0f}%) {text} eta {eta_text}")

    def write(self, message: str) -> None:
        """A message that does not break the bar."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None



# Config fields that change where results are written, not the results: a resume that adds
# or drops a tracker is still exact.
_NOT_IN_RESULTS = ("trackers", "tracker_options")


def warn_config_changes(saved: Mapping[str, Any], current: Mapping[str, Any],
                        progress: Progress) -> None:
    """Resuming with another config is allowed (e.g. more steps) but no longer exact: say so."""
    old, new = flatten(saved), flatten(current)
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)
                     and k.split(".")[0] not in _NOT_IN_RESULTS)
    if changed:
        details = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:10])
        message = (f"resuming with a config that differs from the checkpoint's ({details}); "
                   "the run will not match an uninterrupted one")
        log.warning("%s", message)
        progress.write(f"warning: {message}")
