"""How far the host may run ahead of the devices: `InFlight(depth)`.

JAX dispatches a step and returns before it ran. A loop that never waits would queue every
step of a log interval, each holding its input batch in device memory; `InFlight.add(x)`
after each dispatch waits (without fetching anything) for the step `depth` dispatches back,
so at most `depth + 1` steps and their batches are in flight while the host prepares the
next one.
"""

from __future__ import annotations

import collections
from typing import Any

__all__ = ["InFlight"]


class InFlight:
    """At most `depth` (>= 1) unfinished steps besides the newest one."""

    def __init__(self, depth: int) -> None:
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise ValueError(f"depth={depth!r}: expected an int >= 1 (steps in flight)")
        self.depth = depth
        self._pending: collections.deque[Any] = collections.deque()

    def add(self, output: Any) -> None:
        """`output`: a (small) array the step just dispatched produces."""
        self._pending.append(output)
        if len(self._pending) > self.depth:
            self._pending.popleft().block_until_ready()
