"""U-Net on the ISBI 2012 EM membranes (the data set of the U-Net paper), trained on CPU.

    python -m experiments.segment --workdir=runs/isbi2012 \
        --config=experiments/configs/isbi2012_unet.py --config.data_dir=../shared/data

Needs `isbi2012_em_membrane.npz`. The 30 labelled 512x512 images are split 25 train / 5 val
(`val_size=5`, the last five); the 30 challenge test images have no public masks, so the
held-out labelled images are the evaluation (there is no test split). Training uses random
128x128 tiles with flips; validation runs the fully convolutional U-Net on the whole 512x512
images (`eval_crop=False`). A smaller U-Net than the paper's (16 base features, depth 4,
0.48 M parameters, batch norm, same padding) so that it trains on a CPU.
Result (measured 2026-11-25, 2-core CPU shared with other jobs, 1 CPU device), on the 5
held-out 512x512 images after 600 steps of 8 tiles: pixel accuracy 92.3%, mean IoU 0.794,
mean Dice 0.881 (membrane class: IoU 0.679, Dice 0.809; cell: IoU 0.909, Dice 0.952),
4m57s wall for the whole command (3m05s CPU user time). Still improving at the end: more
steps (and the paper's elastic deformations) give more.
Over seeds 0, 1, 2 (measured 2026-12-02 with `python -m experiments.sweep
--workdir=runs/isbi_seeds --config=experiments/configs/isbi2012_unet.py
--config.data_dir=../shared/data --seeds=0,1,2`, quiet 2-core CPU, 3.3-3.7 min wall per run),
on the 5 held-out images after the last step: mean IoU 0.790 ± 0.004 (mean ± std; 0.793,
0.786, 0.791; 95% CI 0.781-0.799), pixel accuracy 92.2% ± 0.1%, mean Dice 0.878 ± 0.003
(membrane: IoU 0.672 ± 0.006, Dice 0.804 ± 0.004; cell: IoU 0.907 ± 0.002, Dice 0.951 ± 0.001).
"""

import ml_collections

from cnnjax.train.runner.config import default_config


def get_config() -> ml_collections.ConfigDict:
    c = default_config()
    c.model = "unet"
    c.model_options = ml_collections.ConfigDict({"base_features": 16, "depth": 4})
    c.dataset = "isbi2012"
    c.dataset_options = ml_collections.ConfigDict({"val_size": 5})
    c.train_split = "train"
    c.eval_split = "val"
    c.test_split = None
    c.augment = "random_crop(size=128, eval_crop=False)|hflip|vflip"
    c.batch_size = 8
    c.eval_batch_size = 5
    c.num_train_steps = 600
    c.eval_every_steps = 150
    c.log_every_steps = 25
    c.optimizer.name = "adamw"
    c.optimizer.learning_rate = 2e-3
    c.schedule.name = "warmup_cosine"
    c.schedule.warmup_steps = 30
    c.best_metric = "mean_iou"
    return c
