"""Fixtures for the training-core tests: fast compiles."""

from __future__ import annotations

import jax
import pytest


@pytest.fixture(autouse=True, scope="module")
def _fast_compiles():
    """Skip most XLA optimisations while these tests run: compile time dominates on 2 cores
    (the Flax ImageNet example's trick), and every compared program is built the same way."""
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)
