"""A fine-tuning run through the real command line that starts from a torchvision `.pth` file.

The file is a torchvision-layout state dict of a random `resnet18` (`to_torchvision` of random
cnnjax variables, ImageNet's 1,000-class head) saved with `torch.save`. The run trains
`shapes` (6 classes) with learning rate 0 and frozen batch statistics for one step, so its
checkpoint holds the step-0 variables: every one equals the file's except the re-initialised head.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from cnnjax import models

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # a resnet18 compile: ~1.5 min on a quiet 2-core CPU, 10 min on a loaded one
def test_classify_starts_from_a_torchvision_pth(tmp_path: Path):
    init = jax.jit(lambda key: models.create("resnet18").init(key, jnp.zeros((1, 32, 32, 3))))
    variables = init(jax.random.key(7))
    state_dict = models.to_torchvision("resnet18", variables)
    pth = tmp_path / "resnet18-random.pth"
    torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state_dict.items()}, pth)
    workdir = tmp_path / "run"
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.classify", f"--workdir={workdir}",
         "--config=experiments/configs/tiny.py", "--config.model=resnet18",
         "--config.model_options={}", f"--config.init_from={pth}",
         "--config.dataset_options.image_size=32", "--config.dataset_options.num_examples=32",
         "--config.num_train_steps=1", "--config.optimizer.learning_rate=0.0",
         "--config.freeze_batch_stats=('*',)"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "re-initialised (shapes differ): params/head/bias, params/head/kernel" in proc.stderr

    import orbax.checkpoint as ocp

    with ocp.CheckpointManager(workdir / "checkpoints") as m:
        saved = m.restore(1, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
    got = traverse_util.flatten_dict({"params": saved["params"], **saved["model_state"]})
    want = traverse_util.flatten_dict(dict(variables))
    assert got.keys() == want.keys()
    assert got[("params", "head", "kernel")].shape == (512, 6)  # shapes' 6; the file's 1,000
    for key, value in want.items():
        if key[:2] == ("params", "head"):
            continue
        np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(value), err_msg=str(key))
