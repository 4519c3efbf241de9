"""glibc malloc settings that let XLA's CPU runtime reuse a step's buffers: applied once, on
`import cnnjax`, on CPU-only machines.

Why: XLA's CPU runtime allocates a compiled step's temporaries (about 400 MB for a ResNet-18
or U-Net training step, see the README's CPU section) on every call and frees them after.
glibc serves allocations above 32 MB with ``mmap`` and hands them back with ``munmap``, and
allocations from XLA's worker threads come from per-thread arenas that do the same, so every
step touches ~400 MB of fresh pages: ~100,000 page faults, each one zeroing 4 KiB, about 15%
of a U-Net training step on a 2-core CPU. One malloc arena (``M_ARENA_MAX=1``), no
mmap-served chunks (``M_MMAP_MAX=0``) and no trimming of the heap's top (``M_TRIM_THRESHOLD``)
make the next step reuse the freed pages. The cost: the process keeps its peak heap instead
of returning it to the system between steps. Numerics are unaffected (only where buffers
live changes).

When: glibc on Linux, the switch on (``CNNJAX_HOST_ALLOCATOR`` is not ``0``/``false``/``off``/
``no``), and JAX cannot use an accelerator (``JAX_PLATFORMS`` is unset or starts with
``cpu``, and no JAX GPU/TPU plugin is installed), so a GPU/TPU job's process is left as it
is (its step buffers live on the device). Threads that allocated before the settings keep
their own arenas, so import cnnjax before running JAX code to get the whole benefit.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import os
import platform
import warnings

from cnnjax.checks import env_switch

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_SETTINGS = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1))
#: The same settings as glibc tunables, for another process (a PyTorch benchmark column) to
#: get what cnnjax gives itself: `GLIBC_TUNABLES=<this>` in its environment.
GLIBC_TUNABLES = ":".join(
    f"glibc.malloc.{name}={value}" for name, (_, value) in zip(
        ("arena_max", "mmap_max", "trim_threshold"), _SETTINGS, strict=True))


def enabled() -> bool:
    """The switch: ``CNNJAX_HOST_ALLOCATOR`` (default on)."""
    return env_switch("CNNJAX_HOST_ALLOCATOR")


def cpu_only() -> bool:
    """True when JAX can only run on the CPU here: ``JAX_PLATFORMS`` unset or CPU first, and
    no accelerator plugin installed (CUDA/ROCm plugins register under ``jax_plugins``)."""
    platforms = os.environ.get("JAX_PLATFORMS", "").strip().lower()
    if platforms:
        return platforms.split(",")[0] == "cpu"
    if importlib.metadata.entry_points(group="jax_plugins"):
        return False
    return importlib.util.find_spec("libtpu") is None


def configure() -> bool:
    """Applies the settings where they apply (see the module docstring); True if applied.

    A ``CNNJAX_HOST_ALLOCATOR`` that is neither on nor off warns and leaves malloc alone (this
    runs on import: no error can be caught there)."""
    try:
        on = enabled()
    except ValueError as e:
        warnings.warn(f"cnnjax: {e}; malloc settings left alone", RuntimeWarning, stacklevel=2)
        return False
    if not (on and platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"):
        return False
    if not cpu_only():
        return False
    libc = ctypes.CDLL(None)
    return all(libc.mallopt(param, value) == 1 for param, value in _SETTINGS)
