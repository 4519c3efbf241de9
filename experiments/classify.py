"""Image (and 1D-signal) classification: train, evaluate or predict from one command.

    python -m experiments.classify --workdir=runs/shapes        # built-in data, a few minutes
    python -m experiments.classify --workdir=runs/mnist --config=experiments/configs/mnist.py
    python -m experiments.classify --workdir=runs/mnist --mode=eval --checkpoint=best
    python -m experiments.classify --workdir=runs/mnist --mode=predict --input=images/

Without --config the run uses `experiments/configs/shapes.py`. Flags, modes, outputs and
the multi-host launch are described in `experiments/common.py` and the README.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from experiments.common import main as common_main


def main(argv: Sequence[str] | None = None) -> int:
    """Run with `argv` (argv[0] is the program name; default `sys.argv`); returns the exit code."""
    return common_main(argv, task="classification", default_config="shapes.py")


if __name__ == "__main__":
    sys.exit(main())
