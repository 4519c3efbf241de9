"""MNIST with LeNet-5 (LeCun et al. 1998, 61,706 parameters; 28x28 inputs padded by the model).

    python -m experiments.classify --workdir=runs/mnist_lenet5 \
        --config=experiments/configs/mnist_lenet5.py --config.data_dir=../shared/data

Result: MEASURED_LENET
"""

import ml_collections

from experiments.configs import mnist


def get_config() -> ml_collections.ConfigDict:
    c = mnist.get_config()
    c.model = "lenet5"
    return c
