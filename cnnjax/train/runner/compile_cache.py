"""JAX's persistent compilation cache for cnnjax runs: `enable_compilation_cache()`.

A run compiles its train and eval steps (and a few small functions) before its first step;
with the cache, a second run of the same program (a resume, another seed, a sweep's next
run, the evaluation of a trained run) loads the compiled executables from disk instead.
The cache key is JAX's: the lowered program (the oneDNN convolutions appear in it as FFI
custom calls by name, with their attributes), the JAX/XLA versions, the XLA flags and the
devices, so a changed kernel choice (`CNNJAX_ONEDNN=0`), flag or version compiles anew.
A cached executable is the same program XLA would compile: numbers do not change.

Where: `$CNNJAX_CACHE_DIR/xla`, else `$XDG_CACHE_HOME/cnnjax/xla` or `~/.cache/cnnjax/xla`
(beside the oneDNN kernel build); a folder already set with JAX's own
`JAX_COMPILATION_CACHE_DIR` is kept. Off with `config.compilation_cache=False` or
`CNNJAX_COMPILATION_CACHE=0`. A folder that cannot be written turns it off with one warning.
"""

from __future__ import annotations

import logging
from pathlib import Path

import jax

from cnnjax.checks import env_switch
from cnnjax.ops.onednn.native import cache_dir

__all__ = ["ENV_SWITCH", "MIN_COMPILE_TIME_S", "enable_compilation_cache"]

log = logging.getLogger("cnnjax.train")

ENV_SWITCH = "CNNJAX_COMPILATION_CACHE"
#: Programs that compile faster than this are not cached (reading them back costs about as
#: much); a run's train and eval steps take seconds.
MIN_COMPILE_TIME_S = 0.2


def enable_compilation_cache(enabled: bool = True) -> Path | None:
    """Turn JAX's persistent compilation cache on (see the module docstring); returns its
    folder, or None when it stays off. Call before the first compilation of a run."""
    if not enabled or not env_switch(ENV_SWITCH):
        return None
    current = jax.config.jax_compilation_cache_dir
    if current:
        return Path(current)
    path = cache_dir() / "xla"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".writable"
        probe.touch()
        probe.unlink()
    except OSError as e:
        log.warning("compilation cache off: cannot write %s (%s)", path, e.strerror or e)
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_S)
    return path
