"""`--help` (and `-h`) prints the script's commands and flags and exits 0, for every entry point."""

from __future__ import annotations

import pytest

from experiments import classify, segment, sweep


@pytest.mark.parametrize(
    "main, prog, flag",
    [
        (classify.main, "experiments.classify", "--workdir"),
        (segment.main, "experiments.segment", "--mode"),
        (sweep.main, "experiments.sweep", "--seeds"),
    ],
)
@pytest.mark.parametrize("arg", ["--help", "-h"])
def test_help_prints_commands_and_flags(capsys, main, prog, flag, arg):
    assert main(["prog", arg]) == 0
    out = capsys.readouterr()
    assert out.out.startswith(f"usage: python -m {prog}")
    assert f"python -m {prog} --workdir=" in out.out
    assert f"  {flag}:" in out.out
    assert out.err == ""
    if prog != "experiments.sweep":  # the scripts' own commands and fields, not common's notes
        assert "--mode=export" in out.out and "main config fields" in out.out
        assert "Flags are parsed into a fresh" not in out.out
