"""Tiny run for tests and smoke checks (seconds on CPU; accuracy is not the point).

    python -m experiments.classify --workdir=/tmp/tiny --config=experiments/configs/tiny.py
    python -m experiments.segment --workdir=/tmp/tiny_seg --config=experiments/configs/tiny.py:seg

Result: runs end to end and writes every output; the metrics mean nothing (a few steps).
The argument after ':' picks the task: "cls" (default, `shapes`) or "seg" (`shapes_seg`).
`EXPECTED`: the "cls" run's test accuracy (near chance, 1/6, after 6 steps), so the slow test
`pytest -m slow tests/experiments/test_experiments_sweep.py -k tiny` catches a change. Measured
(2026-12-02, 1 CPU device) over seeds 0, 1, 2 with `python -m experiments.sweep
--workdir=runs/tiny_sweep --config=experiments/configs/tiny.py --seeds=0,1,2`:
test accuracy 0.141 ± 0.016 (mean ± std; seed 0: 0.1406).
"""

import ml_collections

from cnnjax.train.runner.config import default_config

# The stated result, checked by the slow test (|test accuracy - value| <= tolerance).
EXPECTED = {"metric": "accuracy", "split": "test", "value": 0.141, "tolerance": 0.06}


def get_config(arg: str = "cls") -> ml_collections.ConfigDict:
    if arg not in ("cls", "seg"):
        raise ValueError(f"tiny config argument {arg!r}; expected 'cls' or 'seg'")
    c = default_config()
    seg = arg == "seg"
    c.dataset = "shapes_seg" if seg else "shapes"
    c.model = "unet_tiny" if seg else "cnn2d"
    c.dataset_options = ml_collections.ConfigDict(
        {"num_examples": 64, "image_size": 16, "channels": 3}
    )
    c.model_options = ml_collections.ConfigDict(
        {"base_features": 4} if seg else {"widths": (8, 16, 16)}
    )
    c.batch_size = 16
    c.num_train_steps = 6
    c.eval_every_steps = 3
    c.checkpoint_every_steps = 3
    c.log_every_steps = 2
    c.keep_checkpoints = 2
    c.async_checkpointing = False
    c.optimizer.learning_rate = 1e-2
    return c
