"""MNIST with the seed notes' Keras `simple_cnn` (93,322 parameters): the 99% benchmark.

    python -m experiments.classify --workdir=runs/mnist --config=experiments/configs/mnist.py \
        --config.data_dir=../shared/data

Needs `mnist.npz` in `data_dir` (or $CNNJAX_DATA_DIR). 5,000 training images are held out
for validation (best checkpoint); the test split is the official 10,000.
Result (measured 2026-12-05 12:40, 2-core CPU, 1 CPU device, quiet): 99.30% test accuracy
after 5 epochs (2,145 steps of 128) in 47.8-48.6 s wall for the whole command (imports, compilation
from a warm cache, training, evaluations, checkpoints and plots; `python -m benchmarks.end_to_end`,
which runs the same recipe in plain PyTorch beside it: 49.4-53.7 s, 99.36%). Earlier
releases: 1m40s (2026-11-25), 53-64 s (2026-12-04), 55-56 s (2026-12-05 09:20). Benchmark
target: >= 99.0% within 10 minutes
(`pytest -m slow tests/experiments -k mnist`).
Over seeds 0, 1, 2 (measured 2026-12-02 with `experiments.sweep`, README "Paper runs"):
99.30% ± 0.08% test accuracy (mean ± std; 99.21%, 99.37%, 99.31%; 95% CI 99.10-99.50%),
best validation 99.12% ± 0.03%. `EXPECTED` is that mean with the tolerance the slow test
`pytest -m slow tests/experiments/test_experiments_sweep.py -k mnist` allows (~5 std).
"""

import ml_collections

from cnnjax.train.runner.config import default_config

# The stated result, checked by the slow test (|test accuracy - value| <= tolerance).
EXPECTED = {"metric": "accuracy", "split": "test", "value": 0.993, "tolerance": 0.004}


def get_config() -> ml_collections.ConfigDict:
    c = default_config()
    c.model = "simple_cnn"
    c.dataset = "mnist"
    c.dataset_options = ml_collections.ConfigDict({"val_size": 5000})
    c.batch_size = 128
    c.eval_batch_size = 1000
    c.num_epochs = 5
    c.optimizer.name = "adamw"
    c.optimizer.learning_rate = 3e-3
    c.optimizer.weight_decay = 1e-4
    c.schedule.name = "warmup_cosine"
    c.schedule.warmup_steps = 200
    c.eval_every_steps = 1000
    c.log_every_steps = 100
    return c
