"""`python -m experiments.sweep`: grids of seeds and settings, and hyperparameter searches, run
locally or on SLURM, with result tables.

    cli      the command line (`main`), the usage in its docstring
    plan     grid x seeds -> runs (workdir, the direct command, resolved config)
    local    running runs as local subprocesses (`--jobs`), signals, attempt records
    slurm    `--launcher=slurm`: one job-array task per run through submitit, requeue
    space    `--search=optuna`'s flags and `--space` ranges
    search   the Optuna study: trials as runs, journal storage, pruning from metrics.jsonl
    trials   how a search starts and follows its trials on either launcher
    extras   submitit / optuna are optional: a missing one is a usage error
    results  results.csv / summary.csv / summary.md from any workdirs
    plots    the sweep's plots
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """`experiments.sweep.cli.main`: run the sweep command line `argv`; returns the exit code."""
    from experiments.sweep.cli import main as cli_main

    return cli_main(argv)
