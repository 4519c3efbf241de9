"""Subprocess driver for the resume tests: one `train_and_evaluate` run with injected faults.

    python tests/loop/run_training.py WORKDIR CONFIG_JSON [--sigkill-after-checkpoint K]
        [--sigkill-at-step S] [--sigterm-at-step S]

- records `step hash(batch)` of every executed train step in WORKDIR/../<name>.batches
  (the data order, checked against an uninterrupted run);
- `--sigkill-after-checkpoint K`: SIGKILL itself once checkpoint K is on disk;
- `--sigkill-at-step S`: SIGKILL itself right after the train metrics of step S are logged
  (so metrics.jsonl holds lines beyond the last checkpoint);
- `--sigterm-at-step S`: send itself SIGTERM at step S (preemption);
- `--nan-at-step S`: the images of step S (and of the halted steps after it) are NaN;
- `--evaluate WHICH [--split SPLIT]`: run `evaluation.evaluate` instead of training;
- `--coordinator HOST:PORT --num-processes N --process-id I`: one process of a multi-process
  run (`jax.distributed.initialize`, gloo CPU collectives);
- prints the summary as JSON on the last line.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir")
    parser.add_argument("config")
    parser.add_argument("--sigkill-after-checkpoint", type=int)
    parser.add_argument("--sigkill-at-step", type=int)
    parser.add_argument("--sigterm-at-step", type=int)
    parser.add_argument("--nan-at-step", type=int)
    parser.add_argument("--evaluate", help="evaluate checkpoint 'best', 'latest' or a step")
    parser.add_argument("--split", default="test")
    parser.add_argument("--coordinator")
    parser.add_argument("--num-processes", type=int)
    parser.add_argument("--process-id", type=int)
    args = parser.parse_args()

    if args.coordinator is not None:
        import jax

        jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)

    from cnnjax.checkpoint import manager as manager_lib
    from cnnjax.train.runner import evaluation, loop
    from cnnjax.train.runner import reporting as log_lib

    workdir = Path(args.workdir)
    batches_log = workdir.parent / f"{workdir.name}.batches"

    build = loop.build

    def recording_build(config):
        c = build(config)
        compiled = c.train_step.compiled

        def recording(state, batch, *extra):  # the batch as the loop placed it
            digest = hashlib.sha256()
            for key in sorted(batch):
                digest.update(np.ascontiguousarray(np.asarray(batch[key])).tobytes())
            with batches_log.open("a") as f:
                f.write(f"{int(state.step)} {digest.hexdigest()[:16]}\n")
            if args.nan_at_step is not None and int(state.step) == args.nan_at_step - 1:
                batch = {**batch, "image": batch["image"] * np.float32(np.nan)}
            return compiled(state, batch, *extra)

        c.train_step = dataclasses.replace(c.train_step, compiled=recording)
        return c

    if args.coordinator is None:  # a process sees only its part of a multi-process batch
        loop.build = recording_build

    if args.sigkill_after_checkpoint is not None:
        save = manager_lib.CheckpointManager.save

        def killing_save(self, step, *a, **kw):
            out = save(self, step, *a, **kw)
            if step == args.sigkill_after_checkpoint:
                self.wait()
                os.kill(os.getpid(), signal.SIGKILL)
            return out

        manager_lib.CheckpointManager.save = killing_save

    if args.sigkill_at_step is not None or args.sigterm_at_step is not None:
        write = log_lib.MetricsWriter.write

        def faulty_write(self, step, split, metrics, **fields):
            out = write(self, step, split, metrics, **fields)
            if split == "train" and step == args.sigkill_at_step:
                os.kill(os.getpid(), signal.SIGKILL)
            if split == "train" and step == args.sigterm_at_step:
                os.kill(os.getpid(), signal.SIGTERM)
            return out

        log_lib.MetricsWriter.write = faulty_write

    config = json.loads(Path(args.config).read_text())
    if args.evaluate is not None:
        which = int(args.evaluate) if args.evaluate.isdigit() else args.evaluate
        print(json.dumps(evaluation.evaluate(config, workdir, args.split, which)))
        return
    summary = loop.train_and_evaluate(config, workdir)
    sys.stdout.flush()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
