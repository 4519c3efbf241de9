"""ResNet-18 with the CIFAR stem (3x3 conv, no max-pool) on CIFAR-10 JPEG test images.

    python -m experiments.classify --workdir=runs/cifar10_resnet18 \
        --config=experiments/configs/cifar10_resnet18.py --config.data_dir=../shared/data

Only the 10,000 CIFAR-10 test images are available here (`cifar10_jpg_test.npz`, JPEG
quality 75); the data source splits them into 8,000 train / 2,000 test (+ `val_size` for
validation), so results are NOT comparable with published CIFAR-10 numbers (50,000 training
images). ResNet-18 is 11.2 M parameters, ~0.56 GFLOP per 32x32 image: on GPU this is minutes;
the 2-core CPU trains ~44 images/s, so the full 60 epochs (3,240 steps) take about 2.7 hours.
Result: none measured here; the full run (2.7 h a seed on this CPU, three seeds for a figure
with its spread, see README "Paper runs") is for a GPU. A smoke check, not a result (one
seed; measured 2026-11-30, 2-core CPU, 1 CPU device, quiet machine): `--config.num_epochs=4`
(216 steps, nearly all of them the 200-step warm-up) reached 51.9% test accuracy (49.1% val)
in 11m28s wall, i.e. the pipeline learns.
"""

import ml_collections

from cnnjax.train.runner.config import default_config


def get_config() -> ml_collections.ConfigDict:
    c = default_config()
    c.model = "resnet18"
    c.model_options = ml_collections.ConfigDict({"stem": "cifar"})
    c.dataset = "cifar10"
    c.dataset_options = ml_collections.ConfigDict({"test_size": 2000, "val_size": 1000})
    c.augment = "crop_flip"
    c.batch_size = 128
    c.eval_batch_size = 500
    c.num_epochs = 60
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.1
    c.optimizer.momentum = 0.9
    c.optimizer.nesterov = True
    c.optimizer.weight_decay = 5e-4
    c.schedule.name = "warmup_cosine"
    c.schedule.warmup_steps = 200
    c.task.label_smoothing = 0.1
    c.log_every_steps = 50
    return c
