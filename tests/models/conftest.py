"""Fast compiles for these tests: XLA's optimisation passes cost more than they save on the
tiny shapes used here (Flax's ImageNet example does the same in its tests)."""

import jax
import pytest


@pytest.fixture(autouse=True)
def _fast_compile():
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)
