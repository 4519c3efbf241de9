"""The Grain datasets behind `make_pipeline`: pure index arithmetic on a `grain.MapDataset`,
so element k of a stream is a function of (seed, k) alone (see `cnnjax.data.pipeline` for
the order of a stream).

- `ShuffledEpochs`: the training stream, a fresh permutation of the source per epoch.
- `PaddedSource`: the eval stream, one pass padded to whole batches (`valid` = 0 on padding).
- `LocalBatches`: process p's batches, each read and prepared as a whole (one gather from
  the source, one normalisation) from the positions of its rows in the stream.
"""

from __future__ import annotations

import threading
from typing import Any

import grain
import numpy as np

__all__ = ["LocalBatches", "PaddedSource", "ShuffledEpochs"]


class _IndexView(grain.MapDataset):
    """A MapDataset of `length` elements, element i computed from the parent by `_get(i)`."""

    def __init__(self, parent: grain.MapDataset, length: int) -> None:
        super().__init__(parent)
        self._length = length

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        return self._get(index)

    def _get(self, index: int) -> Any:
        raise NotImplementedError

    def __str__(self) -> str:
        return f"{type(self).__name__}(length={self._length})"


class PaddedSource(_IndexView):
    """The eval stream: record k with `valid` = 1 for k < len(parent); beyond, up to
    `length` (a multiple of the batch size), copies of record 0 with `valid` = 0."""

    def _get(self, index: int) -> Any:
        if index < len(self._parent):
            return {**self._parent[index], "valid": np.float32(True)}
        return {**self._parent[0], "valid": np.float32(False)}

    def locate(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(source indices, valid flags) of stream `positions` at once."""
        valid = positions < len(self._parent)
        return np.where(valid, positions, 0), valid


class ShuffledEpochs(_IndexView):
    """The training stream: position k -> record perm_e[k mod kept], e = k // kept, where
    perm_e = default_rng([seed, e]).permutation(n) and kept = steps_per_epoch * batch_size
    (the tail of each epoch's permutation is dropped).

    One NumPy permutation per epoch (cached for the two latest epochs) instead of Grain's
    per-element `index_shuffle`, which costs far more per element (figures: README,
    "Data sets").
    """

    def __init__(self, parent: grain.MapDataset, length: int, kept: int, seed: int) -> None:
        super().__init__(parent, length)
        self._kept, self._seed = kept, seed
        self._num_records = len(parent)
        self._cache: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def permutation(self, epoch: int) -> np.ndarray:
        with self._lock:
            perm = self._cache.get(epoch)
            if perm is None:
                rng = np.random.default_rng([self._seed, epoch])
                perm = rng.permutation(self._num_records)
                self._cache = {e: p for e, p in self._cache.items() if e >= epoch - 1}
                self._cache[epoch] = perm
            return perm

    def _get(self, index: int) -> Any:
        epoch, offset = divmod(index, self._kept)
        return self._parent[int(self.permutation(epoch)[offset])]

    def locate(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(source indices, valid flags: all True) of stream `positions` at once."""
        epochs, offsets = np.divmod(positions, self._kept)
        indices = np.empty_like(positions)
        for epoch in np.unique(epochs):  # a batch spans at most two epochs
            rows = epochs == epoch
            indices[rows] = self.permutation(int(epoch))[offsets[rows]]
        return indices, np.ones(positions.shape, bool)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"], state["_lock"] = {}, None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


class LocalBatches(grain.MapDataset):
    """Batch s of process p of P: the rows at stream positions s*B + p*b + j (j < b, B = P*b
    the global batch), made as a whole: the stream locates their records (`locate`) and
    `prepare(source, indices, positions, valid)` reads and prepares them together (see
    `cnnjax.data.pipeline`).

    Batch s is element s, so a Grain iterator over it saves the same state as one over the
    per-row datasets batched with `.batch(b)` (resume states stay valid).
    """

    def __init__(self, stream: ShuffledEpochs | PaddedSource, source: Any, *, num_batches: int,
                 global_batch: int, local_batch: int, process_index: int,
                 prepare: Any) -> None:
        super().__init__(stream)
        self._stream, self._source, self._prepare = stream, source, prepare
        self._num_batches, self._global_batch = num_batches, global_batch
        self._rows = process_index * local_batch + np.arange(local_batch, dtype=np.int64)

    def __len__(self) -> int:
        return self._num_batches

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        positions = index * self._global_batch + self._rows
        indices, valid = self._stream.locate(positions)
        return self._prepare(self._source, indices, positions, valid)

    def __str__(self) -> str:
        return f"LocalBatches(num_batches={self._num_batches})"
