"""`BatchIterator`: what `make_pipeline` returns, an iterator of process-local batches whose
position can be saved (`get_state`) and restored (`set_state`) for exact resumption."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import grain
import numpy as np

from cnnjax.data.info import DataInfo

__all__ = ["BatchIterator"]


class BatchIterator(Iterator[dict[str, np.ndarray]]):
    """Iterator of process-local batches with checkpointable state.

    `get_state()` returns a small JSON-serialisable dict; `set_state(state)` on an iterator
    of the same pipeline (same source, seed, batch size, ...) continues with exactly the
    batch that would have come next.

    Attributes:
      info: the data set's metadata.
      steps_per_epoch: global batches per epoch (train: floor(n / B); eval: ceil(n / B)).
      num_batches: batches this iterator yields in total, or None when it repeats forever.
    """

    def __init__(
        self,
        dataset: grain.IterDataset,
        *,
        info: DataInfo,
        steps_per_epoch: int,
        num_batches: int | None,
        fingerprint: dict[str, Any],
    ) -> None:
        self._dataset = dataset
        self._iterator = iter(dataset)
        self.info = info
        self.steps_per_epoch = steps_per_epoch
        self.num_batches = num_batches
        self._fingerprint = fingerprint

    def __iter__(self) -> BatchIterator:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        return next(self._iterator)

    def __len__(self) -> int:
        if self.num_batches is None:
            raise TypeError("len() of an infinite pipeline (num_epochs=None)")
        return self.num_batches

    def get_state(self) -> dict[str, Any]:
        return {"grain": self._iterator.get_state(), "pipeline": dict(self._fingerprint)}

    def set_state(self, state: Mapping[str, Any]) -> None:
        if not isinstance(state, Mapping) or "grain" not in state:
            raise ValueError(f"state={state!r}: expected a dict from BatchIterator.get_state()")
        saved = dict(state.get("pipeline", {}))
        if saved and saved != self._fingerprint:
            raise ValueError(
                f"state was saved by a different pipeline {saved}; this one is "
                f"{self._fingerprint}: restoring it would not continue the same stream"
            )
        self._iterator.set_state(state["grain"])

    def close(self) -> None:
        close = getattr(self._iterator, "close", None)
        if close is not None:
            close()
