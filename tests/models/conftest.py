"""Fast compiles for these tests: XLA's optimisation passes cost more than they save on the
tiny shapes used here (Flax's ImageNet example does the same in its tests)."""

import pytest


@pytest.fixture(autouse=True)
def _fast_compile(fast_compile):
    """Every test here compiles without XLA's optimisation passes (tests/conftest.py)."""
