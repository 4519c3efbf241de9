"""The Grain datasets behind `make_pipeline`: pure index arithmetic on a `grain.MapDataset`,
so element k of a stream is a function of (seed, k) alone (see `cnnjax.data.pipeline` for
the order of a stream).

- `ShuffledEpochs`: the training stream, a fresh permutation of the source per epoch.
- `PaddedSource`: the eval stream, one pass padded to whole batches (`valid` = 0 on padding).
- `ProcessRows`: process p's rows of every global batch.
"""

from __future__ import annotations

import threading
from typing import Any

import grain
import numpy as np

__all__ = ["PaddedSource", "ProcessRows", "ShuffledEpochs"]


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


class ProcessRows(_IndexView):
    """Process p of P sees rows p*b .. (p+1)*b - 1 of every global batch of B = P*b rows:
    local index i -> global index (i // b) * B + p * b + i % b, for i < `length`."""

    def __init__(
        self, parent: grain.MapDataset, length: int, global_batch: int, local_batch: int,
        process_index: int,
    ) -> None:
        super().__init__(parent, length)
        self._global_batch, self._local_batch = global_batch, local_batch
        self._process_index = process_index

    def _get(self, index: int) -> Any:
        step, row = divmod(index, self._local_batch)
        local_start = self._process_index * self._local_batch
        return self._parent[step * self._global_batch + local_start + row]


class PaddedSource(_IndexView):
    """The eval stream: record k with `valid` = 1 for k < len(parent); beyond, up to
    `length` (a multiple of the batch size), copies of record 0 with `valid` = 0."""

    def _get(self, index: int) -> Any:
        if index < len(self._parent):
            return {**self._parent[index], "valid": np.float32(True)}
        return {**self._parent[0], "valid": np.float32(False)}


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

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"], state["_lock"] = {}, None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
