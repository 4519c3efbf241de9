"""Image (and 1D-signal) classification: train, evaluate or predict from one command.

    python -m experiments.classify --workdir=runs/shapes        # built-in data, a few minutes
    python -m experiments.classify --workdir=runs/mnist --config=experiments/configs/mnist.py
    python -m experiments.classify --workdir=runs/mnist --mode=eval --checkpoint=best
    python -m experiments.classify --workdir=runs/mnist --mode=predict --input=images/

Without --config the run uses `experiments/configs/shapes.py`. Flags, modes, outputs and
the multi-host launch are described in `experiments/common.py` and the README.
"""

import functools
import sys

from experiments.common import main as common_main

#: `main(argv=None) -> exit code` (argv[0] is the program name; default `sys.argv`).
main = functools.partial(common_main, task="classification", default_config="shapes.py")

if __name__ == "__main__":
    sys.exit(main())
