"""One run per workdir: a lock file created atomically, naming its holder.

Relaunching a job that is still running is a common accident; two processes writing one
workdir's checkpoints and `metrics.jsonl` corrupt both. `acquire(workdir)` creates
`<workdir>/cnnjax.lock` with `O_CREAT | O_EXCL` (atomic on local file systems and NFSv3+)
holding the host, PID and start time of the process; a second process fails at once with
`WorkdirLockedError` naming them. A lock whose process is dead on this host (killed, OOM) is
taken over with a log line; a PID reused by another process is recognised by the process
start time recorded next to it (Linux `/proc`). Multi-host: only process 0 takes the lock
(one per workdir); the others get a lock object that holds nothing.

Released by `release()`, on leaving the `with` block, or at interpreter exit (atexit).
"""

from __future__ import annotations

import atexit
import datetime
import json
import logging
import os
import secrets
import socket
import time
from pathlib import Path
from typing import Any

import jax

__all__ = ["LOCK_FILE", "WorkdirLock", "WorkdirLockedError", "acquire"]

LOCK_FILE = "cnnjax.lock"
_CREATING_GRACE_S = 10.0  # an empty lock file younger than this is a holder still writing it

log = logging.getLogger("cnnjax.checkpoint")


class WorkdirLockedError(RuntimeError):
    """Another process holds the workdir's lock."""


def _process_start_ticks(pid: int) -> int | None:
    """Start time of `pid` in clock ticks since boot (Linux), to tell a reused PID apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int, start_ticks: int | None) -> bool:
    """Whether `pid` runs on this host and is the process that wrote the lock."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    now = _process_start_ticks(pid)
    return start_ticks is None or now is None or now == start_ticks


def _describe(holder: dict[str, Any]) -> str:
    return (f"host {holder.get('host')!r}, PID {holder.get('pid')}, "
            f"started {holder.get('start_time')}")


class WorkdirLock:
    """The lock on one workdir (see the module docstring); a context manager.

    `path` is None for processes other than 0, which hold nothing.
    """

    def __init__(self, path: Path | None, token: str | None) -> None:
        self.path = path
        self._token = token
        if path is not None:
            atexit.register(self.release)

    @property
    def held(self) -> bool:
        return self._token is not None

    def release(self) -> None:
        """Remove the lock file if it is still ours (idempotent)."""
        if self.path is None or self._token is None:
            return
        token, self._token = self._token, None
        atexit.unregister(self.release)
        try:
            if _read(self.path).get("token") == token:
                self.path.unlink()
        except OSError:
            pass  # already gone, or the workdir was removed

    def __enter__(self) -> WorkdirLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read(path: Path) -> dict[str, Any]:
    text = path.read_text()
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _create(path: Path, holder: dict[str, Any]) -> bool:
    """Create the lock file holding `holder`; False if it exists."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    try:
        os.write(fd, json.dumps(holder).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def _stale_reason(path: Path, holder: dict[str, Any]) -> str | None:
    """Why the existing lock can be taken over, or None if its holder may be alive."""
    if not holder:
        age = time.time() - path.stat().st_mtime
        return f"it is unreadable and {age:.0f} s old" if age > _CREATING_GRACE_S else None
    if holder.get("host") != socket.gethostname():
        return None  # cannot tell whether a process on another host is alive
    pid = holder.get("pid")
    if not isinstance(pid, int) or not _alive(pid, holder.get("start_ticks")):
        return f"its process ({_describe(holder)}) is no longer running"
    return None


def _take_over(path: Path, stale: dict[str, Any], reason: str) -> None:
    """Move the stale lock aside; if it changed meanwhile (another process took it over
    first), put the new one back and report it as held."""
    aside = path.with_name(f"{path.name}.stale.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return  # someone else removed it: just try to create ours
    moved = _read(aside)
    if moved != stale:
        try:
            os.link(aside, path)
        except FileExistsError:
            pass
        aside.unlink()
        raise WorkdirLockedError(
            f"workdir {str(path.parent)!r} was just locked by another process "
            f"({_describe(moved)}); is the job already running?"
        )
    aside.unlink()
    log.warning("took over the workdir lock %s: %s", path, reason)


def acquire(workdir: str | os.PathLike, *, process_index: int | None = None) -> WorkdirLock:
    """Lock `workdir` for this run, or raise `WorkdirLockedError` naming the holder.

    `process_index` (default `jax.process_index()`): only process 0 creates the lock file.
    The workdir must exist (see `ensure_writable`). Use as `with acquire(workdir): ...`.
    """
    if process_index is None:
        process_index = jax.process_index()
    if not isinstance(process_index, int) or process_index < 0:
        raise ValueError(f"process_index must be an int >= 0, got {process_index!r}")
    if process_index != 0:
        return WorkdirLock(None, None)
    path = Path(workdir).expanduser().absolute() / LOCK_FILE
    token = secrets.token_hex(16)
    holder = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "start_time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "start_ticks": _process_start_ticks(os.getpid()),
        "token": token,
    }
    for _ in range(3):
        if _create(path, holder):
            return WorkdirLock(path, token)
        try:
            existing = _read(path)
            reason = _stale_reason(path, existing)
        except FileNotFoundError:
            continue  # released meanwhile
        if reason is None:
            who = _describe(existing) if existing else "a process still writing it"
            raise WorkdirLockedError(
                f"workdir {str(path.parent)!r} is in use by another run ({who}); "
                f"is the job already running? If that process is gone, delete {str(path)!r}"
            )
        _take_over(path, existing, reason)
    raise WorkdirLockedError(f"could not lock {str(path)!r}: it keeps changing")
