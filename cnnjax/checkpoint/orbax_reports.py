"""What Orbax reports, made readable: its expected warnings dropped, its writer threads'
tracebacks cut to one line, and the OS error behind a failed save found (`os_error`).

The log filters are installed on import (`cnnjax.checkpoint.manager` imports this module).
"""

from __future__ import annotations

import errno
import logging
import os

__all__ = ["os_error"]


class _DropExpectedOrbaxWarnings(logging.Filter):
    """Orbax warns at every save without metrics (only evaluation steps carry them here) and
    about every option it ignores for a read-only manager; neither needs the user's attention."""

    _EXPECTED = (
        "did not provide metrics",
        "read_only=True, setting",
        "Given directory is read only",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in self._EXPECTED)


class _OneLineOrbaxThreadErrors(logging.Filter):
    """Orbax logs every failing writer thread of an asynchronous save with a full traceback
    (about 50 lines each: a full disk gave 160 lines before the one that matters). Keep the
    one-line message; `CheckpointManager.wait` raises the error itself, as one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and "raised an exception" in record.getMessage():
            record.exc_info = None
            record.exc_text = None
        return True


logging.getLogger("absl").addFilter(_DropExpectedOrbaxWarnings())
logging.getLogger("absl").addFilter(_OneLineOrbaxThreadErrors())


def os_error(error: BaseException) -> OSError | None:
    """The OSError behind a failed save (Orbax/TensorStore wrap it, or only quote its code)."""
    seen = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno:
            return e
        e = e.__cause__ or e.__context__
    text = str(error)
    for code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO):
        if f"os_error_code='{code}'" in text or os.strerror(code) in text:
            return OSError(code, os.strerror(code))
    return None
