"""Test-wide setup: 8 virtual CPU devices (set before JAX initialises) and shared fixtures."""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from pathlib import Path

import pytest

_DEFAULT_SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data_dir() -> Path | None:
    """The real data sets (MNIST, ISBI, ...): `$CNNJAX_DATA_DIR` or `../shared/data`, if present."""
    candidate = Path(os.environ.get("CNNJAX_DATA_DIR", _DEFAULT_SHARED_DATA))
    return candidate if candidate.is_dir() else None


@pytest.fixture(scope="session", autouse=True)
def _eight_cpu_devices():
    """Start JAX's CPU backend before any test runs, with the 8 devices set above: a test that
    changes `XLA_FLAGS` for its subprocesses (the sweep tests do) must not decide the device
    count of every later test in the same process by being the first to touch a device."""
    import jax

    assert len(jax.devices()) == 8, jax.devices()


@pytest.fixture
def data_dir() -> Path:
    """Directory of the real data sets; skips the test cleanly when it is absent."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("real data sets not found: set CNNJAX_DATA_DIR or provide ../shared/data")
    return path


@pytest.fixture
def fast_compile():
    """Turns XLA's optimisation passes off for one test: on tiny shapes they cost more than
    they save (Flax's ImageNet example does the same). Folders opt in with an autouse fixture."""
    import jax  # after the XLA_FLAGS above are set

    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)
