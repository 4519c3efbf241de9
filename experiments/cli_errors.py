"""What the experiment scripts treat as a user's mistake, and how they report it.

`UsageError` (exit 2) and `RUN_ERRORS` (exit 1) are printed as one line by
`experiments.common.main`, never as a traceback; `check_config_path` and `last_line` turn the
config loader's errors into such lines; `remove_if_empty` takes back a workdir that a failed
run created but never wrote to.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import flax.errors

from cnnjax.checkpoint import (
    CorruptCheckpointError,
    NoUsableCheckpointError,
    StructureMismatchError,
    WorkdirLockedError,
)

__all__ = ["RUN_ERRORS", "UsageError", "check_config_path", "last_line", "remove_if_empty"]


class UsageError(ValueError):
    """A bad command line (unknown flag, missing --workdir, bad --mode...): exit code 2."""


# What a run failure is (exit 1, a one-line message): a bad config value, a data or
# checkpoint problem, a workdir that cannot be used, divergence. Anything else is a bug.
RUN_ERRORS = (ValueError, TypeError, OSError, FloatingPointError, WorkdirLockedError,
              NoUsableCheckpointError, CorruptCheckpointError, StructureMismatchError,
              flax.errors.FlaxError)


def last_line(message: str) -> str:
    """The message of an error wrapped by absl/ml_collections with a traceback in its text."""
    lines = [line for line in message.strip().splitlines() if line.strip()]
    if any(line.startswith("Traceback") for line in lines):
        return f"{lines[0].rstrip(':')}: {lines[-1].strip()}"
    return message


def check_config_path(argv: Sequence[str], default_config: Path) -> None:
    """`--config=PATH[:ARG]` must name an existing .py file (a usage error otherwise)."""
    values = [a.split("=", 1)[1] for a in argv[1:] if a.startswith(("--config=", "-config="))]
    path = Path(values[-1].split(":", 1)[0]) if values else default_config
    if not path.exists():
        raise UsageError(f"--config={path}: no such config file")
    if not path.is_file():
        raise UsageError(f"--config={path} is not a file (expected a get_config() .py file)")


def remove_if_empty(workdir: Path) -> None:
    """Remove a workdir this run created when it holds no file (only empty folders)."""
    if not workdir.is_dir() or any(p.is_file() or p.is_symlink() for p in workdir.rglob("*")):
        return
    for d in sorted(workdir.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        d.rmdir()
    workdir.rmdir()
