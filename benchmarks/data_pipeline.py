"""Input pipeline throughput in images per second: MNIST-sized batches and 224x224 augmented
batches, with the work done in this process, in threads and in worker processes.

    python -m benchmarks.data_pipeline                      # real data from $CNNJAX_DATA_DIR
    python -m benchmarks.data_pipeline --data-dir ../shared/data --batches 30

Without the real data sets it falls back to the procedural `shapes` data set (28x28 grey) for
the MNIST case and to synthetic in-memory images for the 224x224 case, and says so.
Compare the figures with the model's training step: images/s of the pipeline must exceed
batch_size / step time, or the accelerator starves.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from cnnjax.data import ArraySource, DataInfo, get_source, make_pipeline


def measure(
    make: Callable[[], Any], batches: int, warmup: int, batch_size: int
) -> tuple[float, float]:
    """(images/s, ms per batch) over `batches` batches after `warmup` (start-up excluded)."""
    iterator = make()
    try:
        for _ in range(warmup):
            next(iterator)
        start = time.perf_counter()
        for _ in range(batches):
            next(iterator)
        elapsed = time.perf_counter() - start
    finally:
        iterator.close()
    return batches * batch_size / elapsed, 1000.0 * elapsed / batches


def synthetic_rgb(num: int, height: int, width: int, seed: int = 0) -> ArraySource:
    """Smooth random colour images (like decoded photos, larger than the 224 crop)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (num, height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    images = np.repeat(np.repeat(coarse, 16, axis=1), 16, axis=2)[:, :height, :width]
    images = np.clip(images + rng.integers(-20, 21, images.shape), 0, 255).astype(np.uint8)
    info = DataInfo(
        name="synthetic_rgb",
        task="classification",
        num_classes=10,
        class_names=tuple(str(i) for i in range(10)),
        image_shape=(height, width, 3),
        mean=(0.5, 0.5, 0.5),
        std=(0.29, 0.29, 0.29),
    )
    return ArraySource(images, labels=rng.integers(0, 10, num), info=info)


def mnist_source(data_dir: str | None) -> tuple[Any, str]:
    try:
        return get_source("mnist", "train", data_dir), "mnist (local archive)"
    except FileNotFoundError as error:
        print(f"# MNIST not found ({str(error).split('.')[0]}): using shapes 28x28 grey")
        source = get_source("shapes", "train", num_examples=60000, image_size=28, channels=1)
        return source, "shapes 28x28x1 (generated on the fly)"


def cifar_source(data_dir: str | None) -> Any | None:
    try:
        return get_source("cifar10", "train", data_dir)
    except FileNotFoundError:
        return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", default=None, help="folder of the .npz archives (default: $CNNJAX_DATA_DIR)"
    )
    parser.add_argument("--batches", type=int, default=20, help="timed batches per case")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches per case")
    parser.add_argument(
        "--threads",
        type=int,
        default=min(8, os.cpu_count() or 1),
        help="read threads for the threaded cases",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="worker processes for the multiprocess cases (0: skip them)",
    )
    args = parser.parse_args(argv)
    data_dir = args.data_dir or os.environ.get("CNNJAX_DATA_DIR")
    print(f"# cpu cores: {os.cpu_count()}, timed batches: {args.batches}, warm-up: {args.warmup}")

    cases: list[tuple[str, Any, str, int]] = []
    mnist, mnist_name = mnist_source(data_dir)
    cases.append((mnist_name, mnist, "none", 128))
    cases.append((mnist_name, mnist, "mnist", 128))  # affine: rotation, shift, scale
    big = synthetic_rgb(256, 256, 320)
    cases.append(("synthetic 256x320 RGB -> 224", big, "inception_color", 64))
    cifar = cifar_source(data_dir)
    if cifar is not None:
        cases.append(("cifar10 32x32 -> 224", cifar, "inception", 64))
    else:
        print("# cifar10 not found: 224x224 figures use synthetic images only")

    modes: list[tuple[str, dict[str, int]]] = [("in-process", {})]
    if args.threads > 0:
        modes.append((f"{args.threads} threads", {"read_threads": args.threads}))
    if args.workers > 0:
        modes.append((f"{args.workers} workers", {"worker_count": args.workers}))

    print(
        f"{'data':38s} {'augment':16s} {'batch':>5s} {'mode':12s} {'images/s':>10s} "
        f"{'ms/batch':>9s}"
    )
    for name, source, spec, batch_size in cases:
        for mode, extra in modes:

            def make(source=source, spec=spec, batch_size=batch_size, extra=extra):
                return make_pipeline(
                    source, batch_size=batch_size, seed=0, train=True, augment=spec, **extra
                )

            rate, ms = measure(make, args.batches, args.warmup, batch_size)
            print(
                f"{name:38s} {spec:16s} {batch_size:5d} {mode:12s} {rate:10.0f} {ms:9.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
