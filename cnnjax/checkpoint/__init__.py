"""Orbax checkpoints with exact resume: train state + data iterator state + run metadata.

`CheckpointManager` saves one checkpoint per step (asynchronously), keeps the latest N and the
best K by a metric, and restores the latest good / best / a given step onto the current devices.
`write_run_metadata` records what is needed to reproduce a run.
"""

from cnnjax.checkpoint.manager import (
    CheckpointManager,
    CorruptCheckpointError,
    Restored,
    WorkdirNotWritableError,
    ensure_writable,
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
    tree_fingerprint,
)

__all__ = [
    "CheckpointManager",
    "CorruptCheckpointError",
    "Restored",
    "StructureMismatchError",
    "WorkdirNotWritableError",
    "abstract_like",
    "describe_mismatch",
    "ensure_writable",
    "flat_shapes",
    "from_json",
    "git_info",
    "library_versions",
    "run_metadata",
    "to_json",
    "tree_fingerprint",
    "write_run_metadata",
]
