r"""Image (and 1D-signal) classification: train, evaluate or predict from one command.

    python -m experiments.classify --workdir=runs/shapes        # built-in data, a few minutes
    python -m experiments.classify --workdir=runs/mnist --config=experiments/configs/mnist.py
    python -m experiments.classify --workdir=runs/mnist --mode=eval --checkpoint=best
    python -m experiments.classify --workdir=runs/mnist --mode=predict --input=images/
    python -m experiments.classify --workdir=runs/mnist --mode=export --format=stablehlo,onnx
    python -m experiments.classify --workdir=runs/mine --config=experiments/configs/my_images.py \
        --config.data_dir=/path/to/my/images      # your own images, one folder per class

Without --config the run uses `experiments/configs/shapes.py`. Modes: train (the default;
the same command resumes), eval (--checkpoint=best|latest|STEP, --split), predict (--input: a
folder of images, a .npy or a .npz; --output), export (--format=stablehlo,onnx,torch,
--output); eval, predict and export take --weights=ema|raw for a run trained with
config.ema_decay (default: the EMA). Outputs, multi-host launch and every field: the README.
"""

import functools
import sys

from experiments.startup import imports_without_gc

with imports_without_gc():
    from experiments.common import main as common_main

#: `main(argv=None) -> exit code` (argv[0] is the program name; default `sys.argv`).
main = functools.partial(common_main, task="classification", default_config="shapes.py")

if __name__ == "__main__":
    sys.exit(main())
