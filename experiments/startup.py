"""Start-up cost of the entry points: `imports_without_gc()`.

Importing JAX, Flax, Orbax and matplotlib creates about a million objects that live as long
as the process. Python's cyclic garbage collector walks all of them several times while they
are imported (six full collections, ~0.3 s of a 2-core machine's start-up, measured with
`gc.callbacks`), and again at every full collection later (0.15 s at the end of a run).
Collection is paused while the entry points import, then those objects are moved to the
permanent generation (`gc.freeze`), which later collections skip. Nothing else changes:
collection is on again for everything the run allocates.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["imports_without_gc"]


@contextlib.contextmanager
def imports_without_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector in the block, then freeze what it created."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()
