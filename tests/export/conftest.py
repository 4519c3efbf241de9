"""Fast compiles for the export tests: XLA's optimisation passes cost more than they save on
the tiny models used here (as in tests/models). Exported artifacts are StableHLO, lowered
before XLA optimises anything, so this does not change what is exported."""

import jax
import pytest


@pytest.fixture(autouse=True)
def _fast_compile():
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)
