"""The `mnist` config's recipe in plain PyTorch, as a PyTorch user would write it: the
reference column of `benchmarks.end_to_end`.

    python -m benchmarks.torch_mnist --data_dir ../shared/data

Same recipe as `experiments/configs/mnist.py`: the Keras `simple_cnn` (93,322 parameters,
`benchmarks._torch_models.SimpleCNN`), channels-last, 5,000 training images held out for
validation (the last 5,000 of `default_rng(0).permutation(60000)`, as cnnjax's `val_size`),
normalisation with MNIST's mean and std, batch 128 reshuffled every epoch (the last partial
batch dropped), AdamW (lr 3e-3, weight decay 1e-4 on weights with ndim > 1 only, betas
0.9/0.999, eps 1e-8), linear warm-up over 200 steps then cosine decay to 0 at the last step,
5 epochs (2,145 steps), validation every 1,000 steps and at the end (eval batch 1,000), then
the test split. Data is held as tensors in memory and batches are sliced from them (no
DataLoader workers: MNIST fits in memory, as in cnnjax).

Prints progress lines and, last, one JSON line: test/val accuracy, wall time since the
process started, training time and images per second (training steps only, evaluations
excluded), and the time of the first step.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np

T0 = time.perf_counter()

import torch  # noqa: E402 (timed: the import is part of a run's wall time)
from torch import nn  # noqa: E402

from benchmarks._torch_models import SimpleCNN  # noqa: E402

BATCH, EVAL_BATCH, EPOCHS, VAL_SIZE = 128, 1000, 5, 5000
LR, WEIGHT_DECAY, WARMUP, EVAL_EVERY = 3e-3, 1e-4, 200, 1000
MEAN, STD = 0.1307, 0.3081


def _process_age_s() -> float:
    with open("/proc/self/stat") as f:
        start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as f:
        return float(f.read().split()[0]) - start_ticks / os.sysconf("SC_CLK_TCK")


def load(data_dir: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    with np.load(data_dir / "mnist.npz") as z:
        train_x, train_y = z["train_images"], z["train_labels"]
        test_x, test_y = z["test_images"], z["test_labels"]
    order = np.random.default_rng(0).permutation(len(train_x))
    keep, held = order[: len(order) - VAL_SIZE], order[len(order) - VAL_SIZE:]

    def tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = (torch.from_numpy(x).float().div_(255.0) - MEAN) / STD
        x = x.unsqueeze(1).contiguous(memory_format=torch.channels_last)
        return x, torch.from_numpy(y).long()

    return {"train": tensors(train_x[keep], train_y[keep]),
            "val": tensors(train_x[held], train_y[held]), "test": tensors(test_x, test_y)}


def warmup_cosine(total: int):
    def factor(step: int) -> float:
        if step < WARMUP:
            return step / WARMUP
        return 0.5 * (1 + math.cos(math.pi * (step - WARMUP) / (total - WARMUP)))
    return factor


def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), EVAL_BATCH):
            correct += int((net(x[i:i + EVAL_BATCH]).argmax(1) == y[i:i + EVAL_BATCH]).sum())
    net.train()
    return correct / len(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default=os.environ.get("CNNJAX_DATA_DIR", "../shared/data"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    age_at_t0 = _process_age_s() - (time.perf_counter() - T0)
    torch.manual_seed(args.seed)
    data = load(Path(args.data_dir))
    net = SimpleCNN(1, 10).to(memory_format=torch.channels_last)
    decay = [p for p in net.parameters() if p.ndim > 1]
    no_decay = [p for p in net.parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                             {"params": no_decay, "weight_decay": 0.0}], lr=LR)
    train_x, train_y = data["train"]
    steps_per_epoch = len(train_x) // BATCH
    total = EPOCHS * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total))
    gen = torch.Generator().manual_seed(args.seed)
    train_s, step, first_step_s, val = 0.0, 0, None, None
    for _ in range(EPOCHS):
        perm = torch.randperm(len(train_x), generator=gen)
        for i in range(steps_per_epoch):
            start = time.perf_counter()
            idx = perm[i * BATCH:(i + 1) * BATCH]
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(net(train_x[idx]), train_y[idx])
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            train_s += time.perf_counter() - start
            if first_step_s is None:
                first_step_s = age_at_t0 + time.perf_counter() - T0
                print(f"step 1 done {first_step_s:.1f} s after the command started", flush=True)
            if step % 100 == 0:
                print(f"train step {step}/{total} loss={float(loss):.4f}", flush=True)
            if step % EVAL_EVERY == 0 or step == total:
                val = accuracy(net, *data["val"])
                print(f"val step {step}: accuracy={val:.4f}", flush=True)
    test = accuracy(net, *data["test"])
    print(f"test step {step}: accuracy={test:.4f}", flush=True)
    print(json.dumps({
        "impl": "torch", "test_accuracy": test, "val_accuracy": val, "steps": step,
        "train_s": train_s, "images_per_s": step * BATCH / train_s,
        "first_step_s": first_step_s, "wall_s": age_at_t0 + time.perf_counter() - T0,
        "threads": torch.get_num_threads(), "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
