"""Run metadata: what is needed to reproduce a run, written into its workdir.

`run_metadata()` gathers the seed, the resolved config, the git commit and dirty flag, the
versions of Python and the libraries, the devices, the command line and the CPU kernel
switches (`CNNJAX_ONEDNN`: another setting on resume is warned about).
`write_run_metadata()` writes `config.json` (the resolved config) and appends one entry per
start (first run and every resume) to `run_metadata.json`.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import logging
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax

from cnnjax.checkpoint.manager import to_json
from cnnjax.workdir_layout import CONFIG_FILE, RUN_METADATA_FILE

__all__ = ["cpu_kernels", "git_info", "library_versions", "run_metadata", "write_run_metadata"]

log = logging.getLogger("cnnjax.checkpoint")

_PACKAGES = {
    "jax": "jax",
    "jaxlib": "jaxlib",
    "flax": "flax",
    "optax": "optax",
    "orbax": "orbax-checkpoint",
    "grain": "grain",
    "numpy": "numpy",
    "ml_collections": "ml-collections",
    "tensorflow_datasets": "tensorflow-datasets",
}


def library_versions() -> dict[str, str | None]:
    """Python and library versions (None for a library that is not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for key, dist in _PACKAGES.items():
        try:
            out[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[key] = None
    return out


def git_info(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """`{"commit", "dirty"}` of the git repository holding `path` (default: the cnnjax source).

    Outside a git repository (or without git) both are None: not an error.
    """
    where = Path(path) if path is not None else Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=where, capture_output=True, text=True, timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def _devices() -> list[dict[str, Any]]:
    return [
        {
            "id": d.id,
            "platform": d.platform,
            "kind": getattr(d, "device_kind", None),
            "process_index": d.process_index,
        }
        for d in jax.devices()
    ]


def run_metadata(
    config: Mapping[str, Any] | Any, *, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Everything needed to reproduce a run, as a JSON-safe dict.

    `config` is a mapping or an `ml_collections.ConfigDict` (anything with `to_dict()`).
    """
    config_dict = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    return to_json(
        {
            "time_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "seed": config_dict.get("seed"),
            "config": config_dict,
            "git": git_info(),
            "versions": library_versions(),
            "devices": _devices(),
            "process_count": jax.process_count(),
            "process_index": jax.process_index(),
            "host": socket.gethostname(),
            "command_line": [sys.executable, *sys.argv],
            "cwd": os.getcwd(),
            "cpu_kernels": cpu_kernels(),
            **dict(extra or {}),
        }
    )


def cpu_kernels() -> dict[str, Any]:
    """The switches that pick the CPU convolution code path (they change float results):
    ``CNNJAX_ONEDNN`` as set (None: unset) and whether it is on. Raises ValueError for a value
    that is neither on nor off (before the run starts)."""
    from cnnjax.ops.onednn import policy

    return {"CNNJAX_ONEDNN": os.environ.get("CNNJAX_ONEDNN"), "onednn": policy.enabled()}


def _warn_cpu_kernel_change(previous: Mapping[str, Any], current: Mapping[str, Any],
                            path: Path) -> None:
    before = (previous or {}).get("cpu_kernels")
    now = current.get("cpu_kernels")
    if not isinstance(before, Mapping) or not isinstance(now, Mapping):
        return
    if bool(before.get("onednn")) != bool(now.get("onednn")):
        def word(on: Any) -> str:
            return "on" if on else "off"
        log.warning(
            "oneDNN convolutions are %s in this start but were %s in the previous one "
            "(CNNJAX_ONEDNN=%r then, %r now; recorded in %s): convolutions take another code "
            "path, so the run will not match an uninterrupted one bitwise; set CNNJAX_ONEDNN "
            "as before to resume exactly", word(now.get("onednn")), word(before.get("onednn")),
            before.get("CNNJAX_ONEDNN"), now.get("CNNJAX_ONEDNN"), path)


def _write_json_atomic(path: Path, value: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def write_run_metadata(
    workdir: str | os.PathLike, metadata: Mapping[str, Any]
) -> Path:
    """Write `workdir/config.json` and append `metadata` to `workdir/run_metadata.json`.

    `run_metadata.json` is `{"runs": [first start, resume 1, ...]}`; writes are atomic
    (temporary file + rename), so a kill never leaves half a file.
    """
    workdir = Path(workdir)
    _write_json_atomic(workdir / CONFIG_FILE, metadata.get("config", {}))
    path = workdir / RUN_METADATA_FILE
    runs: list[Any] = []
    if path.exists():
        try:
            runs = list(json.loads(path.read_text()).get("runs", []))
        except (json.JSONDecodeError, AttributeError):
            runs = []
    if runs and isinstance(runs[-1], Mapping):
        _warn_cpu_kernel_change(runs[-1], metadata, path)
    runs.append(dict(metadata))
    _write_json_atomic(path, {"runs": runs})
    return path
