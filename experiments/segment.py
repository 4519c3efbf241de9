"""Semantic segmentation: train, evaluate or predict from one command.

    python -m experiments.segment --workdir=runs/shapes_seg        # built-in data, a few minutes
    python -m experiments.segment --workdir=runs/isbi --config=experiments/configs/isbi2012_unet.py
    python -m experiments.segment --workdir=runs/isbi --mode=eval --checkpoint=best
    python -m experiments.segment --workdir=runs/isbi --mode=predict --input=images/

Without --config the run uses `experiments/configs/shapes_seg.py`. Flags, modes, outputs and
the multi-host launch are described in `experiments/common.py` and the README.
"""

import functools
import sys

from experiments.common import main as common_main

#: `main(argv=None) -> exit code` (argv[0] is the program name; default `sys.argv`).
main = functools.partial(common_main, task="segmentation", default_config="shapes_seg.py")

if __name__ == "__main__":
    sys.exit(main())
