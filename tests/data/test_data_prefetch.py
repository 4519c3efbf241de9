"""`Prefetch`: batches prepared by a thread, handed out in order with the exact resume state,
placed on an 8-device mesh ahead; and `InFlight`, the bound on steps dispatched ahead."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from test_data_pipeline import ids, indexed_source

from cnnjax.data import make_pipeline
from cnnjax.data.prefetch import Prefetch
from cnnjax.train import make_mesh, shard_batch
from cnnjax.train.runner.dispatch import InFlight


def pipeline(n=40, batch_size=4):
    return make_pipeline(indexed_source(n), batch_size=batch_size, seed=5, train=True)


def test_same_batches_in_the_same_order_as_the_pipeline():
    expected = [ids(next(it)) for it in [pipeline()] for _ in range(25)]  # past one epoch
    prefetch = Prefetch(pipeline(), size=3)
    try:
        got = [ids(next(prefetch)[0]) for _ in range(25)]
    finally:
        prefetch.close()
    assert got == expected


def test_state_before_each_batch_and_after_the_handed_out_ones_resume_exactly():
    prefetch = Prefetch(pipeline(), size=4)
    handed = []
    try:
        for _ in range(7):
            batch, before = next(prefetch)
            handed.append((ids(batch), json.loads(json.dumps(before))))
        time.sleep(0.2)  # the thread has prepared batches beyond the 7th meanwhile
        after = json.loads(json.dumps(prefetch.state()))
        eighth = ids(next(prefetch)[0])
    finally:
        prefetch.close()
    for batch_ids, before in handed:  # restoring `before` yields that batch again
        it = pipeline()
        it.set_state(before)
        assert ids(next(it)) == batch_ids
    it = pipeline()
    it.set_state(after)  # the position after the 7 handed out, not after the prepared ones
    assert ids(next(it)) == eighth


def test_set_state_before_the_first_batch_only():
    source_iter = pipeline()
    for _ in range(3):
        next(source_iter)
    state = source_iter.get_state()
    prefetch = Prefetch(pipeline())
    prefetch.set_state(state)
    assert prefetch.state() == state
    try:
        assert ids(next(prefetch)[0]) == ids(next(source_iter))
        with pytest.raises(RuntimeError, match="set_state"):
            prefetch.set_state(state)
    finally:
        prefetch.close()


def test_batches_are_placed_ahead_on_the_mesh():
    mesh = make_mesh(8)
    placed_by = []

    def place(batch):
        placed_by.append(threading.current_thread().name)
        return shard_batch(batch, mesh)

    prefetch = Prefetch(pipeline(n=64, batch_size=16), place=place, size=2)
    try:
        batch, _ = next(prefetch)
    finally:
        prefetch.close()
    assert len(batch["image"].sharding.device_set) == 8
    assert batch["image"].shape == (16, 6, 6, 1)
    assert set(placed_by) == {"cnnjax-prefetch"}  # not on the consumer's thread


class _Failing:
    def __init__(self, fail_at):
        self.i, self.fail_at = 0, fail_at

    def __next__(self):
        if self.i == self.fail_at:
            raise ValueError(f"unreadable record {self.i}")
        self.i += 1
        return {"x": np.full(2, self.i)}

    def get_state(self):
        return {"i": self.i}

    def set_state(self, state):
        self.i = state["i"]


def test_errors_and_the_end_reach_the_consumer_in_order():
    prefetch = Prefetch(_Failing(fail_at=2))
    assert [next(prefetch)[1] for _ in range(2)] == [{"i": 0}, {"i": 1}]
    with pytest.raises(ValueError, match="unreadable record 2"):
        next(prefetch)
    with pytest.raises(ValueError, match="unreadable record 2"):  # and again, not a hang
        next(prefetch)
    prefetch.close()

    finite = Prefetch(_Finite(2))
    assert [b["x"] for b, _ in finite] == [1, 2]
    finite.close()


class _Finite(_Failing):
    def __init__(self, n):
        super().__init__(fail_at=None)
        self.n = n

    def __next__(self):
        if self.i == self.n:
            raise StopIteration
        self.i += 1
        return {"x": self.i}


def test_close_stops_a_producer_blocked_on_a_full_queue():
    prefetch = Prefetch(pipeline(), size=1)
    next(prefetch)
    time.sleep(0.1)
    prefetch.close()
    assert not prefetch._thread.is_alive()


@pytest.mark.parametrize("size", [0, -1, 1.5, True])
def test_bad_sizes(size):
    with pytest.raises(ValueError, match=f"size={size!r}: expected an int >= 1"):
        Prefetch(pipeline(), size=size)


class _Step:
    def __init__(self, log, i):
        self.log, self.i = log, i

    def block_until_ready(self):
        self.log.append(self.i)
        return self


def test_in_flight_waits_for_the_step_depth_dispatches_back():
    waited: list[int] = []
    bound = InFlight(2)
    for i in range(6):
        bound.add(_Step(waited, i))
        assert waited == list(range(max(0, i - 1)))  # step i - 2 is finished once i is added
    with pytest.raises(ValueError, match="depth=0"):
        InFlight(0)
