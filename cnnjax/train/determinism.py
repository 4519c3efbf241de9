"""Determinism settings for bit-reproducible runs, in one place.

What makes a cnnjax run reproducible (same config + same seed + same JAX/XLA version + same
hardware and device count -> bitwise the same parameters):

- **PRNG**: one root key per run (`jax.random.key(config.seed)`), split by purpose
  (init / dropout / augmentation) and folded with the step inside the train step
  (`jax.random.fold_in(state.rng, state.step)`), so the randomness of step `t` depends only on
  the seed and `t`, never on how many steps ran in this process: a resumed run draws the same
  keys as an uninterrupted one. The train state carries the key, and checkpoints store it.
- **`jax_threefry_partitionable=True`**: random bits do not depend on how an array is sharded,
  so the same key gives the same numbers on 1 or 8 devices (the default since JAX 0.5; set
  explicitly so an environment variable cannot turn it off).
- **GPU**: XLA's `--xla_gpu_deterministic_ops=true` (deterministic scatter/reductions, slower
  atomics-free kernels); it must be in `XLA_FLAGS` before the GPU backend starts, so call
  `configure_determinism()` at the top of a script, before the first JAX computation.
- **Data**: the data pipeline is seeded from `config.seed` (numpy Generators, no global state)
  and its iterator state is checkpointed with the train state.
- CPU and TPU XLA kernels are deterministic for a fixed program; a different device count
  changes the reduction order of cross-device sums, so bitwise equality holds for the same
  device count (float32-close otherwise).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import jax

__all__ = ["DETERMINISM_NOTES", "GPU_DETERMINISTIC_FLAG", "configure_determinism", "step_key"]

GPU_DETERMINISTIC_FLAG = "--xla_gpu_deterministic_ops=true"
DETERMINISM_NOTES = __doc__


def _backends_initialized() -> bool:
    try:
        from jax._src import xla_bridge
    except ImportError:  # pragma: no cover - private module moved
        return True
    return bool(xla_bridge.backends_are_initialized())


def configure_determinism(*, gpu_deterministic_ops: bool = True) -> dict[str, Any]:
    """Set every determinism switch cnnjax relies on; returns what was set (for run metadata).

    Safe to call more than once. If JAX's backends already started, the GPU flag cannot take
    effect any more: a warning says so when a GPU is present and the flag is missing.
    """
    jax.config.update("jax_threefry_partitionable", True)
    flags = os.environ.get("XLA_FLAGS", "")
    gpu_flag_set = GPU_DETERMINISTIC_FLAG.split("=")[0] in flags
    if gpu_deterministic_ops and not gpu_flag_set:
        if not _backends_initialized():
            os.environ["XLA_FLAGS"] = f"{flags} {GPU_DETERMINISTIC_FLAG}".strip()
            gpu_flag_set = True
        elif any(d.platform == "gpu" for d in jax.devices()):
            warnings.warn(
                f"JAX's GPU backend started before {GPU_DETERMINISTIC_FLAG} was set in "
                "XLA_FLAGS; this run may not be bitwise reproducible. Call "
                "cnnjax.train.determinism.configure_determinism() before any JAX computation.",
                RuntimeWarning,
                stacklevel=2,
            )
    return {
        "jax_threefry_partitionable": bool(jax.config.jax_threefry_partitionable),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "gpu_deterministic_ops": gpu_flag_set,
    }


def step_key(key: jax.Array, step: int | jax.Array) -> jax.Array:
    """The key for one step: `fold_in(key, step)`; depends only on the root key and the step."""
    return jax.random.fold_in(key, step)
