"""What a checkpoint step holds besides the train state, and the Orbax handlers that write it.

Items: `state` (the train state, Orbax `StandardSave`), `data` (the data iterator state, one
JSON file PER PROCESS: `data/metadata` for process 0, `data/metadata.process_<i>` for the
others), `loop` and `meta` (JSON, written by process 0). JSON values go through `to_json`
(`bytes` are stored base64-encoded) and come back through `from_json`.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

__all__ = ["JSON_ITEMS", "data_filename", "from_json", "handler_registry", "to_json"]

JSON_ITEMS = ("data", "loop", "meta")
SHARED_JSON_ITEMS = ("loop", "meta")  # the same on every process: written by process 0 only
DATA_FILE = "metadata"  # Orbax's JSON file name; process i > 0 appends `.process_<i>`


def data_filename(process_index: int) -> str:
    """File of process `process_index`'s data iterator state inside a step's `data` item."""
    return DATA_FILE if process_index == 0 else f"{DATA_FILE}.process_{process_index}"


def to_json(value: Any) -> Any:
    """JSON-safe copy: numpy scalars/arrays to Python values, `bytes` to `{"__bytes__": b64}`."""
    if isinstance(value, bytes):
        return {"__bytes__": base64.b64encode(value).decode("ascii")}
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, np.ndarray | np.generic | jax.Array):
        return to_json(np.asarray(value).tolist())
    return value


def from_json(value: Any) -> Any:
    """Inverse of `to_json` for `bytes` (lists stay lists)."""
    if isinstance(value, Mapping):
        if set(value) == {"__bytes__"}:
            return base64.b64decode(value["__bytes__"])
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


def handler_registry(process_index: int) -> Any:
    """Handlers for our items, so metadata can be read before anything is saved or restored."""
    registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
    standard = ocp.StandardCheckpointHandler()
    registry.add("state", ocp.args.StandardSave, standard)
    registry.add("state", ocp.args.StandardRestore, standard)
    for name in SHARED_JSON_ITEMS:
        handler = ocp.JsonCheckpointHandler()
        registry.add(name, ocp.args.JsonSave, handler)
        registry.add(name, ocp.args.JsonRestore, handler)
    data = _ProcessJsonHandler(process_index)
    registry.add("data", ocp.args.JsonSave, data)
    registry.add("data", ocp.args.JsonRestore, data)
    return registry


class _ProcessJsonHandler(ocp.JsonCheckpointHandler):
    """Orbax's JSON handler writes from the primary process only; this one writes from every
    process, each to its own file (`data_filename(process_index)`) in the shared item
    directory (created by Orbax before any handler writes).

    Restoring a file that process 0 wrote is required (missing = corrupt, as before); a
    missing file of process i > 0 means the step was saved by fewer processes: None.
    """

    def __init__(self, process_index: int) -> None:
        super().__init__(
            data_filename(process_index),
            multiprocessing_options=ocp.options.MultiprocessingOptions(primary_host=None),
        )
        self.process_index = process_index

    def restore(self, directory: Any, item: Any = None, args: Any = None) -> Any:
        if self.process_index > 0 and not (directory / self._filename).exists():
            return None
        return super().restore(directory, item, args)
