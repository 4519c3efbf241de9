"""MNIST with LeNet-5 (LeCun et al. 1998, 61,706 parameters; 28x28 inputs padded by the model).

    python -m experiments.classify --workdir=runs/mnist_lenet5 \
        --config=experiments/configs/mnist_lenet5.py --config.data_dir=../shared/data

Result (measured 2026-11-25, 2-core CPU shared with other jobs, 1 CPU device): 99.09% test
accuracy (98.9% val) after 5 epochs (2,145 steps of 128), 1m29s wall for the whole command.
Same optimiser and schedule as `mnist`.
Over seeds 0, 1, 2 (measured 2026-12-02 with `python -m experiments.sweep
--workdir=runs/lenet5_seeds --config=experiments/configs/mnist_lenet5.py
--config.data_dir=../shared/data --seeds=0,1,2`, quiet 2-core CPU, 57-60 s wall per run):
99.10% ± 0.10% test accuracy (mean ± std; 99.1%, 99.0%, 99.2%; 95% CI 98.85-99.35%), best
validation 98.94% ± 0.05%.
"""

import ml_collections

from experiments.configs import mnist


def get_config() -> ml_collections.ConfigDict:
    c = mnist.get_config()
    c.model = "lenet5"
    return c
