"""Work-directory checks made before a run starts: writable, and not silently started over.

- `ensure_writable(workdir)` proves a directory can be created and written to, and says why
  not (a file in the way, a read-only file system, a permission) in `WorkdirNotWritableError`.
- `workdir_history(workdir)` lists what earlier runs left (metrics rows, checkpoints, corrupt
  checkpoints); `refuse_to_start_over(workdir, fresh_start=...)` raises
  `NoUsableCheckpointError` when there is such history but nothing to resume from, so a run
  whose checkpoints are all corrupt is not replaced by a new one unless the user asks for it.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from cnnjax.workdir_layout import CHECKPOINT_DIR, CORRUPT_DIR, METRICS_FILE

__all__ = [
    "NoUsableCheckpointError",
    "WorkdirNotWritableError",
    "ensure_writable",
    "refuse_to_start_over",
    "workdir_history",
]


class WorkdirNotWritableError(OSError):
    """The work directory cannot be created or written to."""


class NoUsableCheckpointError(RuntimeError):
    """The workdir holds an earlier run's history but no checkpoint it could resume from."""


def _why(path: Path, error: OSError) -> str:
    """A user's reason for `error` raised while creating or writing into `path`."""
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            return f"{str(p)!r} is a file, not a directory"
        if p.is_dir():
            break
    code = error.errno
    if code == errno.EROFS:
        return "it is on a read-only file system"
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied (a read-only directory, or one owned by another user)"
    if code == errno.ENOENT and path.parent.is_dir():
        return (f"{str(path.parent)!r} does not allow creating entries (a virtual file system "
                "such as /proc or /sys?)")
    if code == errno.ENOSPC:
        return "no space left on the device"
    return f"{type(error).__name__}: {error.strerror or error}"


def ensure_writable(directory: str | os.PathLike) -> Path:
    """Create `directory` if needed and prove it is writable (write, fsync, delete a probe file).

    Raises `WorkdirNotWritableError` naming the directory and why (a file in the way, a
    read-only file system, a permission), so an unwritable workdir fails at start rather than
    at the first checkpoint an hour later. Returns the absolute path.
    """
    path = Path(directory).expanduser().absolute()
    probe = path / f".write_probe_{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
        try:
            os.write(fd, b"ok")
            os.fsync(fd)
        finally:
            os.close(fd)
        probe.unlink()
    except OSError as e:
        raise WorkdirNotWritableError(
            f"workdir {str(path)!r} is not writable: {_why(path, e)}; "
            "pass a directory you can create and write to"
        ) from e
    return path


def _entries(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if not p.name.startswith(".write_probe"))


def _count_rows(path: Path) -> int:
    if not path.is_file():
        return 0
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


def workdir_history(
    workdir: str | os.PathLike,
    *,
    checkpoint_dir: str = CHECKPOINT_DIR,
    metrics_file: str = METRICS_FILE,
) -> list[str]:
    """What earlier runs left in `workdir`, one description each (empty: nothing).

    Counted: non-empty rows of `metrics_file`, entries of `corrupt_checkpoints/` and entries of
    `checkpoint_dir` (steps or leftover temporary directories). `config.json` and
    `run_metadata.json` are not history: every start writes them.
    """
    root = Path(workdir)
    found = []
    rows = _count_rows(root / metrics_file)
    if rows:
        found.append(f"{metrics_file} with {rows} rows")
    for name in (checkpoint_dir, CORRUPT_DIR):
        if (root / name).exists() and not (root / name).is_dir():
            found.append(f"{name} (a file)")
            continue
        entries = _entries(root / name)
        if entries:
            shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
            found.append(f"{name}/ with {len(entries)} entries ({shown})")
    return found


def refuse_to_start_over(
    workdir: str | os.PathLike,
    *,
    fresh_start: bool,
    how_to_start_fresh: str = "ask for a fresh start explicitly",
    reason: str = "",
    checkpoint_dir: str = CHECKPOINT_DIR,
    metrics_file: str = METRICS_FILE,
) -> None:
    """Call when a run found NO checkpoint to resume from, before it writes anything.

    Raises `NoUsableCheckpointError` naming what `workdir_history` found, unless the workdir
    has no history or `fresh_start` is True. `reason` (e.g. the message of the
    `CorruptCheckpointError` that ended the restore) and `how_to_start_fresh` (the option that
    sets `fresh_start`) are added to the message.
    """
    if fresh_start:
        return
    found = workdir_history(workdir, checkpoint_dir=checkpoint_dir, metrics_file=metrics_file)
    if not found:
        return
    message = (
        f"workdir {str(Path(workdir).absolute())!r} holds an earlier run's history ("
        + "; ".join(found)
        + ") but no checkpoint to resume from; refusing to start a new run over it. "
        f"To start over anyway, {how_to_start_fresh}, or use another workdir."
    )
    if reason:
        message += f"\nWhy no checkpoint could be used: {reason}"
    raise NoUsableCheckpointError(message)
