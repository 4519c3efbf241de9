"""Fashion-MNIST with `simple_cnn` and light augmentation (a harder 28x28 task than MNIST).

    python -m experiments.classify --workdir=runs/fashion_mnist \
        --config=experiments/configs/fashion_mnist.py --config.data_dir=../shared/data

Needs `fashion_mnist.npz` (grouped by class in the archive: the pipeline shuffles it).
Result: MEASURED_FASHION
"""

import ml_collections

from experiments.configs import mnist


def get_config() -> ml_collections.ConfigDict:
    c = mnist.get_config()
    c.dataset = "fashion_mnist"
    c.num_epochs = 10
    c.augment = "hflip"
    return c
