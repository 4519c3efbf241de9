"""One run per workdir: an OS-level lock (`flock`) on `<workdir>/cnnjax.lock`, held for the
process's life.

Relaunching a job that is still running is a common accident; two processes writing one
workdir's checkpoints and `metrics.jsonl` corrupt both. `acquire(workdir)` opens
`<workdir>/cnnjax.lock` and takes an exclusive, non-blocking `fcntl.flock` on it; a second
process fails at once with `WorkdirLockedError`. The kernel releases the lock when its holder
exits in any way (killed, OOM, power loss of a container), so there is no "stale" lock to
judge, and no PID to trust: PIDs do not identify a process across PID namespaces (two
containers sharing a hostname both see their own PID 1). The host, PID, PID namespace and
start time written into the file are only for the error message. (Linux NFS clients emulate
`flock` with byte-range locks that the server arbitrates, so this holds across hosts too.)

A file left by a process that is gone is simply locked again (one log line); the file is
removed on release, and an acquirer that locked a file just removed by its holder retries on
the new one (inode check), so two processes never both hold "the" lock. Multi-host: only
process 0 takes the lock (one per workdir); the others get a lock object that holds nothing.

Released by `release()`, on leaving the `with` block, at interpreter exit (atexit), or by the
kernel when the process ends.
"""

from __future__ import annotations

import atexit
import datetime
import errno
import fcntl
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

import jax

__all__ = ["LOCK_FILE", "WorkdirLock", "WorkdirLockedError", "acquire", "describe_holder",
           "holder_of"]

LOCK_FILE = "cnnjax.lock"
_MAX_READ = 4096  # the holder's text is a few hundred bytes; never read a huge file whole

log = logging.getLogger("cnnjax.checkpoint")


class WorkdirLockedError(RuntimeError):
    """Another process holds the workdir's lock."""


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "a process that has not written its name yet"
    text = (f"host {holder.get('host')!r}, PID {holder.get('pid')}, "
            f"started {holder.get('start_time')}")
    ns = holder.get("pid_namespace")
    if ns and holder.get("host") == socket.gethostname() and ns != _pid_namespace():
        text += " (a PID in another PID namespace, e.g. another container)"
    return text


def _read_fd(fd: int) -> dict[str, Any]:
    """The holder's text, or {} when it is empty, not UTF-8, not JSON or not an object."""
    try:
        data = os.pread(fd, _MAX_READ, 0)
        value = json.loads(data.decode("utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


class WorkdirLock:
    """The lock on one workdir (see the module docstring); a context manager.

    `path` is None for processes other than 0, which hold nothing.
    """

    def __init__(self, path: Path | None, fd: int | None) -> None:
        self.path = path
        self._fd = fd
        if fd is not None:
            atexit.register(self.release)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Remove the lock file if it is still ours, then unlock (idempotent)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        atexit.unregister(self.release)
        try:
            if _same_file(fd, self.path):
                self.path.unlink()  # while still locked: a waiter then sees a new inode
        except OSError:
            pass  # already gone, or the workdir was removed
        finally:
            os.close(fd)  # releases the flock

    def __enter__(self) -> WorkdirLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        st, here = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (here.st_dev, here.st_ino)


def _holder() -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "pid_namespace": _pid_namespace(),
        "start_time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def acquire(workdir: str | os.PathLike, *, process_index: int | None = None) -> WorkdirLock:
    """Lock `workdir` for this run, or raise `WorkdirLockedError` naming the holder.

    `process_index` (default `jax.process_index()`): only process 0 takes the lock.
    The workdir must exist (see `ensure_writable`). Use as `with acquire(workdir): ...`.
    """
    if process_index is None:
        process_index = jax.process_index()
    if not isinstance(process_index, int) or process_index < 0:
        raise ValueError(f"process_index must be an int >= 0, got {process_index!r}")
    if process_index != 0:
        return WorkdirLock(None, None)
    path = Path(workdir).expanduser().absolute() / LOCK_FILE
    for _ in range(10):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read_fd(fd)
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
                raise WorkdirLockedError(
                    f"could not lock {str(path)!r}: {e.strerror or e} (the file system may not "
                    "support flock)") from None
            raise WorkdirLockedError(
                f"workdir {str(path.parent)!r} is in use by another run ({_describe(holder)}); "
                "is the job already running? The lock is released by the system when that "
                "process ends") from None
        if not _same_file(fd, path):
            os.close(fd)  # its holder removed it as we locked it: lock the new file
            continue
        left = _read_fd(fd)
        if left:
            log.warning("locked workdir %s, left locked by a process that has ended (%s)",
                        path.parent, _describe(left))
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_holder()).encode(), 0)
        os.fsync(fd)
        return WorkdirLock(path, fd)
    raise WorkdirLockedError(f"could not lock {str(path)!r}: it keeps being replaced")


def holder_of(workdir: str | os.PathLike) -> dict[str, Any] | None:
    """Who holds `workdir`'s lock ({} when it has not written its name yet), or None when
    nobody does. A probe (a shared flock taken and dropped at once), for tools that start runs
    (`experiments.sweep`) to tell "in use" from "failed"."""
    path = Path(workdir).expanduser().absolute() / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
        return _read_fd(fd) if e.errno in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN) \
            else None
    else:
        return None
    finally:
        os.close(fd)


def describe_holder(holder: dict[str, Any]) -> str:
    """The holder of a lock as the error messages name it."""
    return _describe(holder)
