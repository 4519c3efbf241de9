"""Workdir checks: why a workdir is not writable, and refusing to start over an earlier run's
history when no checkpoint can be used (issue 15, item 3 and the workdir tracebacks)."""

import os
from pathlib import Path

import pytest
from test_checkpoint_manager import make_state
from test_checkpoint_reliability import damage_metadata_missing, save_two

from cnnjax.checkpoint import (
    CheckpointManager,
    CorruptCheckpointError,
    NoUsableCheckpointError,
    WorkdirNotWritableError,
    ensure_writable,
    refuse_to_start_over,
    workdir_history,
)

AS_ROOT = os.geteuid() == 0


def test_workdir_that_is_a_file(tmp_path):
    (tmp_path / "w").write_text("x")
    with pytest.raises(WorkdirNotWritableError, match=r"'.*/w' is not writable: '.*/w' is a file"):
        ensure_writable(tmp_path / "w")


def test_workdir_under_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(WorkdirNotWritableError, match=r"w' is not writable: '.*/f' is a file"):
        ensure_writable(tmp_path / "f" / "sub" / "w")


def test_checkpoints_being_a_file(tmp_path):
    ensure_writable(tmp_path / "w")
    (tmp_path / "w" / "checkpoints").write_text("x")
    with pytest.raises(WorkdirNotWritableError, match=r"checkpoints' is a file, not a directory"):
        CheckpointManager(tmp_path / "w" / "checkpoints")


def test_workdir_under_proc_self():
    with pytest.raises(WorkdirNotWritableError,
                       match=r"'/proc/self/w' is not writable: '/proc/self' does not allow"):
        ensure_writable("/proc/self/w")


def test_workdir_on_a_read_only_file_system():
    """/sys is mounted read-only in containers, and root cannot write there either."""
    if not Path("/sys").is_dir():
        pytest.skip("/sys is absent")
    with pytest.raises(WorkdirNotWritableError, match=r"'/sys/w' is not writable: "
                       r"(it is on a read-only file system|permission denied)"):
        ensure_writable("/sys/w")


@pytest.mark.skipif(AS_ROOT, reason="root writes into read-only directories")
@pytest.mark.parametrize("where", ["workdir", "parent"])
def test_read_only_workdir_or_parent(tmp_path, where):
    parent = tmp_path / "p"
    (parent / "w").mkdir(parents=True)
    target = parent / "w" if where == "workdir" else parent
    target.chmod(0o500)
    try:
        path = parent / "w" if where == "workdir" else parent / "new"
        with pytest.raises(WorkdirNotWritableError, match="permission denied"):
            ensure_writable(path)
    finally:
        target.chmod(0o700)


def test_no_history_in_a_new_or_just_created_workdir(tmp_path):
    assert workdir_history(tmp_path / "absent") == []
    with CheckpointManager(tmp_path / "checkpoints"):
        pass
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "metrics.jsonl").write_text("\n")
    assert workdir_history(tmp_path) == []
    refuse_to_start_over(tmp_path, fresh_start=False)  # nothing to lose: no error


def test_all_checkpoints_corrupt_refuses_to_start_over(tmp_path):
    save_two(tmp_path / "checkpoints")
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2}\n')
    for step in (1, 2):
        damage_metadata_missing(tmp_path / "checkpoints" / str(step))
    # what the trainer does: restore, and on finding nothing usable ask before starting over
    with CheckpointManager(tmp_path / "checkpoints") as m, \
            pytest.raises(CorruptCheckpointError) as corrupt:
        m.restore(make_state())
    for _ in range(2):  # the first run and its rerun (the checkpoints are now moved aside)
        with CheckpointManager(tmp_path / "checkpoints") as m:
            assert m.restore(make_state()) is None
        with pytest.raises(NoUsableCheckpointError) as info:
            refuse_to_start_over(tmp_path, fresh_start=False, reason=str(corrupt.value),
                                 how_to_start_fresh="pass --fresh")
    message = str(info.value)
    assert "metrics.jsonl with 2 rows" in message
    assert "corrupt_checkpoints/ with 2 entries (1-" in message
    assert "To start over anyway, pass --fresh, or use another workdir" in message
    assert "state/_METADATA) is missing" in message
    refuse_to_start_over(tmp_path, fresh_start=True)
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 2  # nothing was touched


def test_history_lists_checkpoints_and_leftovers(tmp_path):
    (tmp_path / "checkpoints" / "5.orbax-checkpoint-tmp-1").mkdir(parents=True)
    (tmp_path / "corrupt_checkpoints").write_text("x")
    assert workdir_history(tmp_path) == [
        "checkpoints/ with 1 entries (5.orbax-checkpoint-tmp-1)",
        "corrupt_checkpoints (a file)",
    ]
