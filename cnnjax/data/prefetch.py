"""Batches made ready ahead of the step that needs them: `Prefetch(iterator, place, size)`.

A background thread takes batches from a resumable iterator (`make_pipeline`'s
`BatchIterator`), lays each out on the devices with `place` (for example a compiled step's
`place`, which splits it over the mesh) and keeps up to `size` of them ready. The training
step that runs meanwhile is not waiting for the input pipeline, and the host-to-device copy
of batch s + 1 overlaps step s (what flax's `prefetch_to_device` does on accelerators).

Resume stays exact: the thread records the iterator's state after every batch it takes, and
`Prefetch` hands each batch out with the state *before* it (what a checkpoint of the step
before it holds) and answers `state()` with the position after the batches handed out, not
after the ones merely prepared. Batches are a pure function of their position in the
stream, so prefetching does not change a run's numbers.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["Prefetch"]

_POLL_S = 0.1  # how often a blocked producer looks whether it was closed


class _End:
    """The iterator is exhausted (`error=None`) or raised `error`."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class Prefetch(Iterator[tuple[Any, Any]]):
    """An iterator of `(placed batch, iterator state before it)` prepared by a thread.

    Args:
      iterator: has `__next__`, `get_state()` and `set_state(state)`; only the thread
        touches it once the first batch was asked for.
      place: host batch -> what the step takes (device arrays); identity by default.
      size: batches prepared ahead (>= 1).

    `set_state` positions the iterator; it is allowed before the first `next` only.
    `close()` stops the thread (and closes the iterator if it has `close`).
    """

    def __init__(self, iterator: Any, place: Callable[[Any], Any] | None = None,
                 size: int = 2) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f"size={size!r}: expected an int >= 1 (batches prepared ahead)")
        self.iterator = iterator
        self._place = place or (lambda batch: batch)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._position: Any = None  # once started: the state after the batches handed out

    def set_state(self, state: Any) -> None:
        if self._thread is not None:
            raise RuntimeError("Prefetch.set_state after batches were prepared: set it first")
        self.iterator.set_state(state)

    def state(self) -> Any:
        """The iterator state after the batches handed out so far."""
        return self.iterator.get_state() if self._thread is None else self._position

    def __next__(self) -> tuple[Any, Any]:
        if self._thread is None:
            self._start()
        item = self._queue.get()
        if isinstance(item, _End):
            self._queue.put(item)  # later calls end the same way
            if item.error is not None:
                raise item.error
            raise StopIteration
        batch, after = item
        before = self.state()
        self._position = after
        return batch, before

    def _start(self) -> None:
        self._position = self.iterator.get_state()
        self._thread = threading.Thread(target=self._produce, name="cnnjax-prefetch",
                                        daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        while not self._stop.is_set():
            try:
                batch = next(self.iterator)
                item: Any = (self._place(batch), self.iterator.get_state())
            except StopIteration:
                item = _End()
            except BaseException as e:  # handed to the consumer, raised there
                item = _End(e)
            if not self._put(item) or isinstance(item, _End):
                return

    def _put(self, item: Any) -> bool:
        """Queue `item`, waiting for room; False when closed meanwhile."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        close = getattr(self.iterator, "close", None)
        if close is not None:
            close()
