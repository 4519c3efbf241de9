"""Shared pieces of the reliability tests (issue 15): the tiny config and one trained workdir."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from experiments import classify

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "experiments" / "configs" / "tiny.py")


def cli(capfd, *argv: str, module=classify) -> tuple[int, str, str]:
    """Run an entry point in-process; (exit code, stdout, stderr) as the user sees them."""
    capfd.readouterr()
    code = module.main(["prog", *argv])
    out, err = capfd.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One tiny classification run (6 steps, checkpoints at 3 and 6), trained once per module."""
    workdir = tmp_path_factory.mktemp("trained") / "run"
    assert classify.main(["prog", f"--workdir={workdir}", f"--config={TINY}", "--noplots"]) == 0
    return workdir


@pytest.fixture
def trained_copy(trained, tmp_path) -> Path:
    """A private copy of the trained workdir a test may damage."""
    dest = tmp_path / "copy"
    shutil.copytree(trained, dest)
    return dest
