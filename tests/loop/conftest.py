"""Fixtures of the loop tests: an uninterrupted reference run (subprocess, 8 CPU devices)."""

from __future__ import annotations

import json

import pytest
from loop_helpers import run_driver, tiny_config


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory):
    """One uninterrupted run of `tiny_config()` in a subprocess (8 CPU devices)."""
    workdir = tmp_path_factory.mktemp("reference") / "run"
    proc = run_driver(workdir, tiny_config())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return workdir, json.loads(proc.stdout.strip().splitlines()[-1])
