r"""Semantic segmentation: train, evaluate or predict from one command.

    python -m experiments.segment --workdir=runs/shapes_seg        # built-in data, a few minutes
    python -m experiments.segment --workdir=runs/isbi --config=experiments/configs/isbi2012_unet.py
    python -m experiments.segment --workdir=runs/isbi --mode=eval --checkpoint=best
    python -m experiments.segment --workdir=runs/isbi --mode=predict --input=images/
    python -m experiments.segment --workdir=runs/isbi --mode=export --format=stablehlo
    python -m experiments.segment --workdir=runs/mine --config.dataset=image_folder_seg \
        --config.data_dir=/path/to/images_and_masks  # DIR/images/*, DIR/masks/* (same names)

Without --config the run uses `experiments/configs/shapes_seg.py`. Modes: train (the default;
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
main = functools.partial(common_main, task="segmentation", default_config="shapes_seg.py")

if __name__ == "__main__":
    sys.exit(main())
