"""`config.imports`: a user's own code (models, data sources, losses, augmentations) imported
before anything is built, and again by every later command on the run.

    c.imports = ("my_project.losses", "plugins/my_data.py")

Each entry is a module name (imported with `importlib.import_module`, found on `sys.path`,
which holds the current folder under `python -m`) or a path to a `.py` file (executed as a
module named `cnnjax_user_<stem>_<hash of its path>`; a relative path is taken from the
current folder and saved absolute). The config, imports included, is saved in the run's
`config.json`, so eval, predict, export and sweeps of the run find the same registrations.
A file is executed once per process unless it changed; executing it again re-registers its
entries (`cnnjax.registry` accepts a re-registration by the same definition).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["import_user_code"]

_PREFIX = "cnnjax_user"
_loaded: dict[str, int] = {}  # absolute file path -> mtime_ns when executed


def _is_file(entry: str) -> bool:
    return entry.endswith(".py") or "/" in entry or "\\" in entry


def _import_file(path: Path) -> None:
    """Execute the .py file `path` as a module (again only when it changed)."""
    if not path.is_file():
        raise FileNotFoundError(f"config.imports: {str(path)!r} is not a file (expected a .py "
                                "file or a module name such as 'my_project.losses')")
    mtime = path.stat().st_mtime_ns
    key = str(path)
    if _loaded.get(key) == mtime:
        return
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    name = f"{_PREFIX}_{path.stem.replace('-', '_')}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"config.imports: cannot load {key!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    _loaded[key] = mtime


def import_user_code(entries: Sequence[str] | None) -> tuple[str, ...]:
    """Import every entry of `config.imports` (module docstring), in order; returns the
    entries with file paths made absolute (what the run saves).

    Raises ValueError for an entry that is not a string or a module that cannot be found,
    FileNotFoundError for a missing file; errors inside the user's code propagate as raised.
    """
    out = []
    for entry in entries or ():
        if not isinstance(entry, str) or not entry.strip():
            raise ValueError(f"config.imports entry {entry!r}: expected a module name or a "
                             "path to a .py file")
        if _is_file(entry):
            path = Path(entry).expanduser().resolve()
            _import_file(path)
            out.append(str(path))
            continue
        try:
            importlib.import_module(entry)
        except ModuleNotFoundError as e:
            if e.name is not None and not entry.startswith(e.name):
                raise  # the user's module itself failed to import something
            raise ValueError(f"config.imports: cannot import module {entry!r} ({e}); is its "
                             "folder on sys.path (run from the project folder), or give a "
                             "path to the .py file") from e
        out.append(entry)
    return tuple(out)
