"""Orbax checkpoints with exact resume: train state + data iterator state + run metadata.

`CheckpointManager` saves one checkpoint per step (asynchronously; never a non-finite state),
keeps the latest N and the best K by a metric, and restores the latest good / best / a given
step onto the current devices. `write_run_metadata` records what is needed to reproduce a run.
Before a run: `ensure_writable` (the workdir), `acquire` (one run per workdir, `lock.py`) and,
when nothing could be restored, `refuse_to_start_over` (never replace an earlier run's history
silently).
"""

from cnnjax.checkpoint.lock import LOCK_FILE, WorkdirLock, WorkdirLockedError, acquire
from cnnjax.checkpoint.manager import (
    CheckpointManager,
    CorruptCheckpointError,
    NonFiniteCheckpointError,
    Restored,
    from_json,
    to_json,
)
from cnnjax.checkpoint.metadata import (
    git_info,
    library_versions,
    run_metadata,
    write_run_metadata,
)
from cnnjax.checkpoint.structure import (
    StructureMismatchError,
    abstract_like,
    describe_mismatch,
    flat_shapes,
    nonfinite_paths,
    tree_fingerprint,
)
from cnnjax.checkpoint.workdir import (
    NoUsableCheckpointError,
    WorkdirNotWritableError,
    ensure_writable,
    refuse_to_start_over,
    workdir_history,
)

__all__ = [
    "LOCK_FILE",
    "CheckpointManager",
    "CorruptCheckpointError",
    "NoUsableCheckpointError",
    "NonFiniteCheckpointError",
    "Restored",
    "StructureMismatchError",
    "WorkdirLock",
    "WorkdirLockedError",
    "WorkdirNotWritableError",
    "abstract_like",
    "acquire",
    "describe_mismatch",
    "ensure_writable",
    "flat_shapes",
    "from_json",
    "git_info",
    "library_versions",
    "nonfinite_paths",
    "refuse_to_start_over",
    "run_metadata",
    "to_json",
    "tree_fingerprint",
    "workdir_history",
    "write_run_metadata",
]
