"""Telling a corrupt checkpoint step from a good one, and moving a corrupt step aside.

`CheckpointManager` (manager.py) calls these while restoring: first the structure of the saved
arrays against the target (a mismatch names the parameters; unreadable metadata is corruption),
then the bytes that came back (Orbax's CRC checks already ran; here our fingerprint of every
array, and no NaN/Inf). A step that fails is moved to `<directory>/../corrupt_checkpoints/`.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import orbax.checkpoint as ocp

from cnnjax.checkpoint.structure import (
    StructureMismatchError,
    describe_mismatch,
    flat_shapes,
    nonfinite_paths,
    tree_fingerprint,
)
from cnnjax.workdir_layout import CORRUPT_DIR

log = logging.getLogger("cnnjax.checkpoint")


class CorruptCheckpointError(RuntimeError):
    """A checkpoint step exists but cannot be read back intact."""


class NonFiniteCheckpointError(RuntimeError):
    """The state to save holds NaN or Inf: saving it would poison every later resume."""


def short(e: BaseException, limit: int = 400) -> str:
    """`e`'s message on one line, cut to `limit` characters (for error messages that quote it)."""
    text = str(e).replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "..."


def check_structure(mngr: ocp.CheckpointManager, step: int, target: Any,
                    directory: Path) -> None:
    """Raise `StructureMismatchError` if step's `state` arrays differ from `target`'s.

    Unreadable array metadata (missing or damaged `state/_METADATA`), or metadata that
    disagrees with the arrays listed in the `meta` item at save time, is corruption
    (`CorruptCheckpointError`), not a mismatch: the architecture is then unknown.
    """
    try:
        metadata = mngr.item_metadata(step)["state"]
        saved = flat_shapes(getattr(metadata, "tree", metadata))
    except Exception as e:
        raise CorruptCheckpointError(
            f"cannot read the array metadata ({type(e).__name__}: {short(e)})"
        ) from e
    if metadata is None or not saved:
        raise CorruptCheckpointError(
            "its array metadata (state/_METADATA) is missing or lists no arrays"
        )
    lines = describe_mismatch(saved, flat_shapes(target))
    if lines:
        _check_metadata_against_meta(mngr, step, saved)
        raise StructureMismatchError(
            f"checkpoint step {step} in {directory} does not match the model/optimizer "
            "(another architecture, number of classes or optimizer?); mismatching arrays:\n  "
            + "\n  ".join(lines)
        )


def _check_metadata_against_meta(mngr: ocp.CheckpointManager, step: int,
                                 saved: Mapping[str, Any]) -> None:
    """Corrupt unless the arrays of `saved` (non-empty ones) are those fingerprinted at
    save time (the `meta` item): tells a damaged `_METADATA` from another architecture."""
    try:
        meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        listed = set(meta["fingerprint"])
    except Exception as e:
        raise CorruptCheckpointError(
            f"cannot read its 'meta' item ({type(e).__name__}: {short(e)})"
        ) from e
    arrays = {path for path, (shape, _) in saved.items() if np.prod(shape) > 0}
    missing = sorted(listed - arrays)  # scalars saved as NumPy scalars are not listed
    if missing:
        raise CorruptCheckpointError(
            "its array metadata (state/_METADATA) lacks arrays that were saved: "
            f"{missing[:10]}"
        )


def check_restored(state: Any, meta: Any) -> None:
    """Raise `CorruptCheckpointError` unless the restored `state` has the bytes fingerprinted
    in `meta` at save time and holds no NaN/Inf."""
    if not isinstance(meta, Mapping) or "fingerprint" not in meta:
        raise CorruptCheckpointError("its 'meta' item has no fingerprint")
    actual = tree_fingerprint(state)
    expected = meta["fingerprint"]
    bad = sorted(k for k in set(actual) | set(expected) if actual.get(k) != expected.get(k))
    if bad:
        raise CorruptCheckpointError(
            f"the bytes of {len(bad)} arrays differ from those saved: {bad[:10]}"
        )
    nonfinite = nonfinite_paths(state)  # saved by a cnnjax without the save check
    if nonfinite:
        raise CorruptCheckpointError(
            f"it holds NaN/Inf (saved by a run that diverged) in {len(nonfinite)} arrays: "
            f"{nonfinite[:10]}"
        )


def quarantine(directory: Path, step: int) -> bool:
    """Move `<directory>/<step>` to `<directory>/../corrupt_checkpoints/<step>-<time>-<pid>`
    (so the step can be saved again). Returns False when the step directory is gone."""
    source = directory / str(step)
    if not source.exists():
        return False
    dest_dir = directory.parent / CORRUPT_DIR
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{step}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    shutil.move(str(source), str(dest))
    log.warning("moved corrupt checkpoint step %d to %s", step, dest)
    return True
