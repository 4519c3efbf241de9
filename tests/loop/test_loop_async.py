"""The loop does not wait for the devices between its checks (log, validation, checkpoint).

The `for step` loop runs with every device-to-host fetch recorded: JAX's transfer guard
(`jax.transfer_guard_device_to_host("disallow_explicit")`, which acts on accelerators) and,
because the CPU backend's arrays already live in host memory and the guard lets them
through, a counter on `jax.Array._value` (what `jax.device_get`, `float()`, `int()`,
`np.asarray` and `tolist` read). Only the `Run` methods that run at those checks may fetch;
a step that fetched a value (the old per-step NaN check, a metric merged per step,
`int(state.step)`) fails the test, as the second test shows.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import traceback

import jax
import pytest
from jax._src import array as array_lib
from loop_helpers import tiny_config

from cnnjax.train.runner import loop
from cnnjax.train.runner import run as run_lib
from cnnjax.train.runner.reporting import read_metrics

BOUNDARY_METHODS = ("resume", "check_finite", "log_train", "periodic", "finish", "preempted",
                    "save")


class FetchRecorder:
    """Records device-to-host fetches made by the main thread while `guarded`."""

    def __init__(self) -> None:
        self.guarded = False
        self.fetches: list[str] = []
        self.boundary_calls: list[str] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        value = array_lib.ArrayImpl._value

        def recorded(array):
            if self.guarded and threading.current_thread() is threading.main_thread():
                self.fetches.append("".join(traceback.format_stack(limit=6)))
            return value.fget(array)

        monkeypatch.setattr(array_lib.ArrayImpl, "_value", property(recorded))
        for name in BOUNDARY_METHODS:
            monkeypatch.setattr(run_lib.Run, name, self.allowed(getattr(run_lib.Run, name)))
        for name in ("check_best_metric", "write_run_metadata"):
            monkeypatch.setattr(loop, name, self.allowed(getattr(loop, name)))
        monkeypatch.setattr(loop, "_loop", self.guard(loop._loop))

    @contextlib.contextmanager
    def _state(self, guarded: bool):
        previous, self.guarded = self.guarded, guarded
        mode = "disallow_explicit" if guarded else "allow"
        try:
            with jax.transfer_guard_device_to_host(mode):
                yield
        finally:
            self.guarded = previous

    def allowed(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            self.boundary_calls.append(fn.__name__)
            with self._state(False):
                return fn(*args, **kwargs)
        return wrapper

    def guard(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self._state(True):
                return fn(*args, **kwargs)
        return wrapper


def _config(**overrides):
    return tiny_config(**{"num_train_steps": 12, "log_every_steps": 4, "eval_every_steps": 0,
                          "checkpoint_every_steps": 0, "augment": None, **overrides})


def test_no_device_to_host_fetch_between_checks(tmp_path, monkeypatch):
    recorder = FetchRecorder()
    recorder.install(monkeypatch)
    summary = loop.train_and_evaluate(_config(), tmp_path / "run")

    assert recorder.fetches == [], recorder.fetches[0]
    assert summary["status"] == "completed" and summary["step"] == 12
    assert recorder.boundary_calls.count("check_finite") == 3  # at steps 4, 8 and 12 only
    train_rows = [r for r in read_metrics(tmp_path / "run") if r["split"] == "train"]
    assert [r["step"] for r in train_rows] == [4, 8, 12]


def test_a_per_step_fetch_is_caught(tmp_path, monkeypatch):
    """The same set-up records a step that fetches its non-finite flag (the test can fail)."""
    train_step = run_lib.Run.train_step

    def fetching_step(self, step, state):
        state = train_step(self, step, state)
        float(self.halted[0])  # what the loop used to do after every step
        return state

    monkeypatch.setattr(run_lib.Run, "train_step", fetching_step)
    recorder = FetchRecorder()
    recorder.install(monkeypatch)
    loop.train_and_evaluate(_config(num_train_steps=3), tmp_path / "run")
    assert len(recorder.fetches) == 3
    assert "fetching_step" in recorder.fetches[0]


@pytest.mark.parametrize("strategy", ["jit", "shard_map", "pmap"])
def test_every_strategy_halts_at_the_first_non_finite_step(tmp_path, strategy):
    """The chained `halted` flag and the prefetched, pre-placed batches work for the three
    step strategies: a diverging run stops naming its first bad step, with the state before
    it saved, and nothing logged past it."""
    from cnnjax.train.metrics import NonFiniteError

    config = _config(parallel={"strategy": strategy}, log_every_steps=3,
                     optimizer={"name": "sgd", "learning_rate": 1e30})
    with pytest.raises(NonFiniteError, match=r"at step (\d+) ") as error:
        loop.train_and_evaluate(config, tmp_path / "run")
    bad = int(str(error.value).split("at step ")[1].split()[0])
    steps = [int(p.name) for p in (tmp_path / "run" / "checkpoints").iterdir()
             if p.name.isdigit()]
    assert steps == [bad - 1]
    assert all(r["step"] < bad for r in read_metrics(tmp_path / "run"))
