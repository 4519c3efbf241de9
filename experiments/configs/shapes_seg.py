"""Default segmentation: a small U-Net (16 base features, depth 3) on the built-in `shapes_seg`.

No download, no files: the procedural shapes are drawn on the fly.

    python -m experiments.segment --workdir=runs/shapes_seg

Result (measured 2026-11-25, 2-core CPU shared with other jobs, 1 CPU device): test pixel
accuracy 97.3%, mean IoU 0.778, mean Dice 0.871 (7 classes: background + 6 shapes) after
6 epochs (1,872 steps of 32), 2m00s wall for the whole command.
`EXPECTED` is that figure (one seed, 0) with the tolerance the slow test
`pytest -m slow tests/experiments/test_experiments_sweep.py -k shapes_seg` allows; not yet
measured over seeds.
"""

import ml_collections

from cnnjax.train.config import default_config

# The stated result, checked by the slow test (|test mean_iou - value| <= tolerance).
EXPECTED = {"metric": "mean_iou", "split": "test", "value": 0.778, "tolerance": 0.05}


def get_config() -> ml_collections.ConfigDict:
    c = default_config()
    c.model = "unet"
    c.model_options = ml_collections.ConfigDict({"base_features": 16, "depth": 3})
    c.dataset = "shapes_seg"
    c.batch_size = 32
    c.num_epochs = 6
    c.optimizer.name = "adamw"
    c.optimizer.learning_rate = 3e-3
    c.schedule.name = "warmup_cosine"
    c.schedule.warmup_steps = 50
    c.log_every_steps = 50
    return c
