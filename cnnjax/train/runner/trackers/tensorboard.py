"""TensorBoard event files in `workdir/tensorboard/` (tensorboardX, no TensorFlow): tracker
"tensorboard". Scalars are named `<split>/<name>`; on resume TensorBoard is asked to purge the
events beyond the restored step."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cnnjax import workdir_layout as layout
from cnnjax.train.runner.trackers.base import MetricWriter, TrackerContext
from cnnjax.train.runner.trackers.registry import register_tracker

__all__ = ["TensorBoardWriter"]


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


class TensorBoardWriter(MetricWriter):
    """Scalars to `workdir/tensorboard/`, flushed at every call (they come at log lines)."""

    def __init__(self, workdir: str | os.PathLike, *, resume_step: int | None = None) -> None:
        self._tb = _summary_writer(
            str(Path(workdir) / layout.TENSORBOARD_DIR),
            purge_step=None if resume_step is None else resume_step + 1,
        )

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        assert self._tb is not None, "TensorBoardWriter used after close()"
        for name, value in scalars.items():
            self._tb.add_scalar(name, value, int(step))
        self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


@register_tracker("tensorboard")
def open_tensorboard(ctx: TrackerContext) -> MetricWriter:
    """TensorBoard event files, purged beyond the restored step."""
    return TensorBoardWriter(ctx.workdir, resume_step=ctx.resume_step)
