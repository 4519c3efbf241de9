"""Fast compiles for the export tests: XLA's optimisation passes cost more than they save on
the tiny models used here (as in tests/models). Exported artifacts are StableHLO, lowered
before XLA optimises anything, so this does not change what is exported."""

import pytest


@pytest.fixture(autouse=True)
def _fast_compile(fast_compile):
    """Every test here compiles without XLA's optimisation passes (tests/conftest.py)."""
