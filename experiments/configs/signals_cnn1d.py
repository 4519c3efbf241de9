"""1D convolutions: `cnn1d` on the built-in procedural ECG-like `signals` (5 rhythm classes).

    python -m experiments.classify --workdir=runs/signals \
        --config=experiments/configs/signals_cnn1d.py

Result (measured 2026-11-25, 2-core CPU shared with other jobs, 1 CPU device): 99.2% test
accuracy (99.0% val) after 10 epochs (780 steps of 64), 2m51s wall for the whole command
(92% after 3 epochs, 32 s).
`EXPECTED` is that figure (one seed, 0) with the tolerance the slow test
`pytest -m slow tests/experiments/test_experiments_sweep.py -k signals` allows; not yet
measured over seeds.
"""

import ml_collections

from cnnjax.train.config import default_config

# The stated result, checked by the slow test (|test accuracy - value| <= tolerance).
EXPECTED = {"metric": "accuracy", "split": "test", "value": 0.992, "tolerance": 0.015}


def get_config() -> ml_collections.ConfigDict:
    c = default_config()
    c.model = "cnn1d"
    c.dataset = "signals"
    c.batch_size = 64
    c.num_epochs = 10
    c.optimizer.name = "adamw"
    c.optimizer.learning_rate = 3e-3
    c.schedule.name = "warmup_cosine"
    c.schedule.warmup_steps = 50
    c.log_every_steps = 25
    return c
