"""1D convolutions: `cnn1d` on the built-in procedural ECG-like `signals` (5 rhythm classes).

    python -m experiments.classify --workdir=runs/signals \
        --config=experiments/configs/signals_cnn1d.py

Result (measured 2026-11-25, 2-core CPU shared with other jobs, 1 CPU device): 99.2% test
accuracy (99.0% val) after 10 epochs (780 steps of 64), 2m51s wall for the whole command
(92% after 3 epochs, 32 s).
Over seeds 0, 1, 2 (measured 2026-12-02 with `python -m experiments.sweep
--workdir=runs/signals_seeds --config=experiments/configs/signals_cnn1d.py --seeds=0,1,2`,
quiet 2-core CPU, 2.8-3.4 min wall per run): test accuracy 99.33% ± 0.12% (mean ± std;
99.2%, 99.4%, 99.4%; 95% CI 99.05-99.62%), best validation 98.6% ± 0.4%.
`EXPECTED` is that mean with the tolerance the slow test
`pytest -m slow tests/experiments/test_experiments_sweep.py -k signals` allows.
"""

import ml_collections

from cnnjax.train.runner.config import default_config

# The stated result, checked by the slow test (|test accuracy - value| <= tolerance).
EXPECTED = {"metric": "accuracy", "split": "test", "value": 0.993, "tolerance": 0.015}


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
