"""Optional dependencies of the sweep: a missing one is a usage error naming its extra."""

from __future__ import annotations

import importlib
from types import ModuleType

from experiments.cli_errors import UsageError

EXTRAS = {"submitit": ("--launcher=slurm", "slurm"), "optuna": ("--search=optuna", "search")}


def require(module: str) -> ModuleType:
    """Import `module` (submitit or optuna), or say which flag needs it and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        flag, extra = EXTRAS[module]
        raise UsageError(f"{flag} needs the {module} package: pip install 'cnnjax[{extra}]' "
                         f"(or pip install {module}); importing it failed: {e}") from e
