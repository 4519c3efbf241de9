"""Run reporting: `metrics.jsonl`, TensorBoard event files (tensorboardX, no TensorFlow), progress.

- `MetricsWriter` appends one JSON object per line to `workdir/metrics.jsonl`
  (`step`, `epoch`, `split`, every metric by name, `learning_rate`, `images_per_s`, ...) and the
  same scalars to `workdir/tensorboard/` as `<split>/<name>`. On resume it drops the lines beyond
  the restored step, so the file equals that of a run that was never interrupted, and asks
  TensorBoard to purge the events beyond it.
- `Progress` is a tqdm bar with loss/metric/images-per-second when stdout is a terminal, and
  plain periodic log lines otherwise (CI, log files).
Only process 0 writes (multi-host runs).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self, TextIO

import jax
from tqdm.auto import tqdm

from cnnjax import workdir_layout as layout

__all__ = [
    "TIMING_FIELDS",
    "MetricsWriter",
    "Progress",
    "format_metrics",
    "read_metrics",
    "truncate_metrics_file",
    "warn_config_changes",
]

log = logging.getLogger("cnnjax.train")

METRICS_FILE = layout.METRICS_FILE
# Fields that measure wall time: they differ between two otherwise identical runs.
TIMING_FIELDS = ("images_per_s", "steps_per_s", "elapsed_s")


def _json_value(value: Any) -> Any:
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


class _ClosedOnExit:
    """`with` support for the writers below: the block's end calls their `close()`."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _summary_writer(logdir: str, purge_step: int | None) -> Any:
    """tensorboardX's `SummaryWriter`, imported on first use without PyTorch.

    tensorboardX imports PyTorch when it is installed (about 1 s) only to accept torch
    tensors, which cnnjax never passes (it writes Python floats); unless something already
    imported torch, it is hidden for that one import (`import torch` raises ImportError there,
    which tensorboardX handles), so a run does not pay for it."""
    hide = "torch" not in sys.modules
    if hide:
        sys.modules["torch"] = None  # type: ignore[assignment]
    try:
        from tensorboardX import SummaryWriter
    finally:
        if hide and sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]
    return SummaryWriter(logdir, purge_step=purge_step)


class MetricsWriter(_ClosedOnExit):
    """Append-only metrics log (`metrics.jsonl` + TensorBoard) for one workdir.

    `resume_step`: the step the run restored (None for a fresh run); lines and events beyond it
    are dropped first.
    """

    def __init__(
        self,
        workdir: str | os.PathLike,
        *,
        resume_step: int | None = None,
    ) -> None:
        self.path = Path(workdir) / METRICS_FILE
        self.enabled = jax.process_index() == 0
        self._file: TextIO | None = None
        self._tb = None
        if not self.enabled:
            return
        truncate_metrics_file(self.path, resume_step)
        self._file = self.path.open("a")
        self._tb = _summary_writer(
            str(Path(workdir) / layout.TENSORBOARD_DIR),
            purge_step=None if resume_step is None else resume_step + 1,
        )

    def write(
        self,
        step: int,
        split: str,
        metrics: Mapping[str, Any],
        **fields: Any,
    ) -> dict[str, Any]:
        """Write one row: `{"step", "split", **fields, **metrics}`; returns it."""
        row = {"step": int(step), "split": split, **fields, **metrics}
        row = {k: _json_value(v) for k, v in row.items()}
        if not self.enabled:
            return row
        assert self._file is not None
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self._tb is not None:
            for name, value in row.items():
                if name in ("step", "split") or not isinstance(value, int | float):
                    continue
                if isinstance(value, bool):
                    continue
                self._tb.add_scalar(f"{split}/{name}", value, int(step))
            self._tb.flush()
        return row

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None



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



def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"optimizer": {"learning_rate": 0.1}} -> {"optimizer.learning_rate": 0.1}."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def warn_config_changes(saved: Mapping[str, Any], current: Mapping[str, Any],
                        progress: Progress) -> None:
    """Resuming with another config is allowed (e.g. more steps) but no longer exact: say so."""
    old, new = flatten(saved), flatten(current)
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed:
        details = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:10])
        message = (f"resuming with a config that differs from the checkpoint's ({details}); "
                   "the run will not match an uninterrupted one")
        log.warning("%s", message)
        progress.write(f"warning: {message}")
