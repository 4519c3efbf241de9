"""Per-process data iterator state in checkpoints, in one process (fast, no subprocesses).

Which process a `CheckpointManager` speaks for is `manager._this_process()`; patching it plays
process 1 of a multi-process run (Orbax itself still sees one process, so directories and the
train state are written as usual). The real two-process run is in `test_multihost_cpu.py`.
"""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax.checkpoint import CheckpointManager
from cnnjax.checkpoint import manager as manager_lib


def make_state() -> dict[str, jnp.ndarray]:
    return {"w": jnp.arange(6.0).reshape(2, 3), "step": jnp.int32(3)}


def data_state(process_index: int) -> dict[str, object]:
    return {"grain": {"next_index": 3}, "pipeline": {"process_index": process_index,
                                                   "process_count": 2}}


def test_data_filename_keeps_process_0_compatible():
    assert manager_lib.data_filename(0) == "metadata"  # Orbax's name, as before the change
    assert manager_lib.data_filename(1) == "metadata.process_1"
    assert len({manager_lib.data_filename(i) for i in range(8)}) == 8


@pytest.mark.parametrize("process", [0, 1])
def test_each_process_saves_and_restores_its_own_data_state(tmp_path, monkeypatch, process):
    monkeypatch.setattr(manager_lib, "_this_process", lambda: process)
    with CheckpointManager(tmp_path / "ckpt", async_save=False) as m:
        m.save(3, make_state(), data=data_state(process), loop={"pending": []})
    item = tmp_path / "ckpt" / "3" / "data"
    written = json.loads((item / manager_lib.data_filename(process)).read_text())
    assert written["value"]["pipeline"]["process_index"] == process
    # process 1 wrote only its own file (process 0's would come from process 0)
    others = {p.name for p in item.iterdir()} - {manager_lib.data_filename(process),
                                                "commit_success.txt"}
    assert others == set()
    with CheckpointManager(tmp_path / "ckpt", read_only=True) as m:
        restored = m.restore(make_state(), "latest")
    assert restored.data == data_state(process)
    assert restored.loop == {"pending": []}
    np.testing.assert_array_equal(np.asarray(restored.state["w"]), np.arange(6.0).reshape(2, 3))


def test_process_missing_from_the_checkpoint_gets_none_not_process_0s_state(
    tmp_path, monkeypatch
):
    """A step saved by one process, read by process 1 of two: no state (the loop then says to
    resume with the same number of processes) rather than process 0's rows."""
    with CheckpointManager(tmp_path / "ckpt", async_save=False) as m:
        m.save(3, make_state(), data=data_state(0))
    monkeypatch.setattr(manager_lib, "_this_process", lambda: 1)
    with CheckpointManager(tmp_path / "ckpt", read_only=True) as m:
        restored = m.restore(make_state(), "latest")
    assert restored.step == 3 and restored.skipped == ()
    assert restored.data is None
