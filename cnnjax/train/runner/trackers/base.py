"""The writer interface every tracker implements, in the shape of clu's `MetricWriter`.

    write_scalars(step, {name: float})      one point per name at `step`
    write_hparams({name: value})            the run's config and metadata (once per start)
    write_artifacts([path, ...])            files to keep with the run (config.json, plots)
    flush(), close()

plus `write_row(step, split, row)`, which the run calls with one metrics row (`split` is
"train", "val" or "test"; `row` holds JSON values, NaN already None). Its default sends the
numbers as `<split>/<name>` to `write_scalars`; the metrics.jsonl writer keeps the row whole.
Writers are called only where the run has already fetched its metrics to the host (log lines
and evaluations): a writer never makes the training loop wait on the devices.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

__all__ = ["Guarded", "MetricWriter", "MultiWriter", "TrackerContext", "scalars_of"]

log = logging.getLogger("cnnjax.train")


def scalars_of(split: str, row: Mapping[str, Any]) -> dict[str, float]:
    """`{"<split>/<name>": number}` for the numbers of a row (not `step`/`split`, bools, None,
    strings): what TensorBoard, MLflow and W&B plot."""
    out = {}
    for name, value in row.items():
        if name in ("step", "split") or isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            out[f"{split}/{name}"] = value
    return out


class MetricWriter:
    """A tracker's writer; every method but `write_scalars` may be left as the no-op here."""

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        """One point per scalar at `step`."""
        raise NotImplementedError

    def write_row(self, step: int, split: str, row: Mapping[str, Any]) -> None:
        """One metrics row of `split`; by default its numbers as `<split>/<name>` scalars."""
        scalars = scalars_of(split, row)
        if scalars:
            self.write_scalars(step, scalars)

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        """The run's parameters (flattened config, seed, versions): strings, numbers, bools."""

    def write_artifacts(self, paths: Sequence[Path]) -> None:
        """Files to keep with the run (config.json, the plots)."""

    def flush(self) -> None:
        """Make what was written visible (files flushed, requests sent)."""

    def close(self) -> None:
        """Flush and release; the writer is not used after this."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MultiWriter(MetricWriter):
    """Every call goes to each writer in order; `close` closes them all even if one fails."""

    def __init__(self, writers: Sequence[MetricWriter]) -> None:
        self.writers = list(writers)

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        for w in self.writers:
            w.write_scalars(step, scalars)

    def write_row(self, step: int, split: str, row: Mapping[str, Any]) -> None:
        for w in self.writers:
            w.write_row(step, split, row)

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        for w in self.writers:
            w.write_hparams(hparams)

    def write_artifacts(self, paths: Sequence[Path]) -> None:
        for w in self.writers:
            w.write_artifacts(paths)

    def flush(self) -> None:
        for w in self.writers:
            w.flush()

    def close(self) -> None:
        error: BaseException | None = None
        for w in self.writers:
            try:
                w.close()
            except Exception as e:  # close the others, then raise the first failure
                error = error or e
        self.writers = []
        if error is not None:
            raise error


class Guarded(MetricWriter):
    """A tracker that must not stop the training run: its first error (a tracking server
    gone, a full disk) is logged as a warning naming it, and it receives nothing more.
    metrics.jsonl, the run's own record, is never guarded."""

    def __init__(self, name: str, writer: MetricWriter) -> None:
        self.name, self.writer, self.failed = name, writer, False

    def _do(self, method: str, *args: Any) -> None:
        if self.failed:
            return
        try:
            getattr(self.writer, method)(*args)
        except Exception as e:
            self.failed = True
            log.warning("tracker %r failed in %s (%s: %s); it gets nothing more from this run "
                        "(metrics.jsonl has every row)", self.name, method, type(e).__name__, e)

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        self._do("write_scalars", step, scalars)

    def write_row(self, step: int, split: str, row: Mapping[str, Any]) -> None:
        self._do("write_row", step, split, row)

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        self._do("write_hparams", hparams)

    def write_artifacts(self, paths: Sequence[Path]) -> None:
        self._do("write_artifacts", paths)

    def flush(self) -> None:
        self._do("flush")

    def close(self) -> None:
        self._do("close")


@dataclasses.dataclass(frozen=True)
class TrackerContext:
    """What opening a tracker's writer needs.

    Attributes:
      workdir: the run's folder (tracker run ids are kept in `tracker_runs.json` there).
      resume_step: the step the run restored (None: a fresh run, step 0).
      options: this tracker's `config.tracker_options.<name>` (a plain dict).
      run_name: a default display name (the workdir's folder name).
    """

    workdir: Path
    resume_step: int | None
    options: Mapping[str, Any]
    run_name: str
