"""Grain input pipelines: `make_pipeline(source, ...)` -> resumable iterator of NumPy batches.
(`cnnjax.train.shard_batch(batch, mesh)` places a process-local batch onto a device mesh.)

Order of a training stream (all index arithmetic on a `grain.MapDataset`, see
`cnnjax.data.datasets`, so element k of the stream is a pure function of (seed, k)):

1. Epoch e is a fresh permutation of the source drawn from (seed, e); `num_epochs` epochs
   or forever.
2. Each epoch keeps its first `steps_per_epoch * batch_size` examples (the last partial
   global batch of every epoch is dropped), so global batch s holds examples
   s*B .. s*B + B - 1 of the stream and epoch boundaries fall between batches.
3. Process p of P takes rows p*B/P .. (p+1)*B/P - 1 of every global batch (so the rows of
   all processes, concatenated in process order, are exactly the global batch).
4. Each local batch is made as a whole (`LocalBatches`): its records are read together
   (one gather from an in-memory source), each row augmented with a `numpy.random.Generator`
   set from (seed, k), k the row's position in the stream (independent of workers,
   processes and batching: Grain's `random_map` seeding), then normalised at once
   ((x/255 - mean) / std, float32). Per-row Python work is the augmentation alone, so a
   batch of MNIST is one gather and one multiply-add instead of 128 trips through Grain.
5. Batch-level mixup/cutmix.

Evaluation: one pass in source order; the last global batch is padded with copies of record
0 whose `valid` is 0, so every example is seen exactly once and batch shapes are static.

Batches are dicts: `image` float32 (b, H, W, C) (or (b, L, C)), `label` int32 (b,) or float32
(b, num_classes) after mixup/cutmix, or `mask` int32 (b, H, W), and `valid` float32 (b,),
with b = batch_size // process_count.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import grain
import jax
import numpy as np
from absl import flags

from cnnjax.checks import check_int
from cnnjax.data import augment as augment_lib
from cnnjax.data.datasets import LocalBatches, PaddedSource, ShuffledEpochs
from cnnjax.data.info import DataInfo
from cnnjax.data.iterator import BatchIterator
from cnnjax.data.mixing import BatchMix, mix_batch
from cnnjax.data.transforms import Op, apply_ops

_INFINITE = sys.maxsize // 4


def _derive_seed(seed: int, *purpose: int) -> int:
    """A 32-bit seed for one purpose (shuffle, augment, mix) derived from the run's seed."""
    return int(np.random.SeedSequence([seed, *purpose]).generate_state(1)[0])


def seek(rng: np.random.Generator, position: int) -> np.random.Generator:
    """`rng` (a Philox generator) set to the state Grain's `random_map` gives the element at
    `position`: counter (0, 0, 0, position), buffers emptied. A row's augmentation draws
    depend on its stream position only, as they did when Grain mapped every element."""
    state = rng.bit_generator.state
    state["state"]["counter"] = np.array([0, 0, 0, position], dtype=np.uint64)
    state["buffer"] = np.zeros(4, dtype=np.uint64)
    state.update(buffer_pos=4, has_uint32=0, uinteger=0)
    rng.bit_generator.state = state
    return rng


def read_records(source: Any, indices: np.ndarray) -> dict[str, np.ndarray]:
    """Records `indices` of `source` stacked per key: `source.take(indices)` (one gather)
    when the source has it, else `source[i]` for each index."""
    take = getattr(source, "take", None)
    if take is not None:
        return take(indices)
    records = [source[int(i)] for i in indices]
    return {key: np.stack([np.asarray(r[key]) for r in records]) for key in records[0]}


@dataclasses.dataclass(frozen=True)
class _Preprocess:
    """A batch from its records: per-row augmentation ops, then dtype conversion and
    normalisation of the whole batch."""

    ops: tuple[Op, ...]
    train: bool
    seed: int  # of the per-row generators (Philox), each set to its row's stream position
    scale: np.ndarray  # per channel: 1 / (255 std), or 1 / 255 without normalisation
    offset: np.ndarray  # per channel: -mean / std, or 0

    def __call__(self, source: Any, indices: np.ndarray, positions: np.ndarray,
                 valid: np.ndarray) -> dict[str, Any]:
        records = self._augmented(source, indices, positions) if self.ops else \
            read_records(source, indices)
        # (x / 255 - mean) / std as one multiply-add, in place on the float copy
        image = records["image"].astype(np.float32)
        np.multiply(image, self.scale, out=image)
        np.add(image, self.offset, out=image)
        out: dict[str, Any] = {"image": image}
        if "label" in records:
            out["label"] = records["label"].astype(np.int32)
        if "mask" in records:
            out["mask"] = records["mask"].astype(np.int32)
        out["valid"] = valid.astype(np.float32)
        return out

    def _augmented(self, source: Any, indices: np.ndarray, positions: np.ndarray
                   ) -> dict[str, np.ndarray]:
        rng = np.random.Generator(np.random.Philox(self.seed))
        rows = [apply_ops(self.ops, dict(source[int(i)]), seek(rng, int(k)), self.train)
                for i, k in zip(indices, positions, strict=True)]
        keys = [key for key in ("image", "label", "mask") if key in rows[0]]
        return {key: np.stack([np.asarray(row[key]) for row in rows]) for key in keys}


@dataclasses.dataclass(frozen=True)
class _MixBatch:
    """Per-batch: mixup/cutmix (`cnnjax.data.mixing.mix_batch`)."""

    ops: tuple[BatchMix, ...]
    num_classes: int

    def __call__(self, batch: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        return mix_batch(self.ops, batch, rng, self.num_classes)


def _process_layout(
    batch_size: int, process_index: int | None, process_count: int | None
) -> tuple[int, int, int]:
    if process_index is None or process_count is None:
        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    check_int(process_count, "process_count")
    check_int(process_index, "process_index", minimum=0)
    if process_index >= process_count:
        raise ValueError(
            f"process_index={process_index}: expected < process_count={process_count}"
        )
    if batch_size % process_count:
        raise ValueError(
            f"batch_size={batch_size}: the global batch must be divisible by "
            f"process_count={process_count}"
        )
    return process_index, process_count, batch_size // process_count


def _ensure_absl_flags_parsed() -> None:
    """Grain 0.2.18's worker processes read an absl flag, which raises outside `absl.app`
    (google/grain#1355, fixed upstream later): mark unparsed flags as parsed (their defaults)."""
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def _check_arguments(
    batch_size: int, seed: int, worker_count: int, read_threads: int, train: bool,
    num_epochs: int | None,
) -> None:
    check_int(batch_size, "batch_size")
    check_int(seed, "seed", minimum=0, maximum=2**63 - 1)
    check_int(worker_count, "worker_count", minimum=0)
    check_int(read_threads, "read_threads", minimum=0)
    if not isinstance(train, bool):
        raise TypeError(f"train={train!r}: expected a bool")
    if num_epochs is not None:
        check_int(num_epochs, "num_epochs")


def _source_info(source: Any, info: DataInfo | None) -> DataInfo:
    """`info`, else the source's own; TypeError/ValueError for a source without one or empty."""
    info = info if info is not None else getattr(source, "info", None)
    if not isinstance(info, DataInfo):
        raise TypeError(f"source={source!r} has no DataInfo `info`: pass info=DataInfo(...)")
    if len(source) == 0:
        raise ValueError(f"source={source!r} is empty")
    return info


def _preprocessing(
    augment: augment_lib.Spec, info: DataInfo, train: bool, normalize: bool, seed: int
) -> tuple[_Preprocess, list[Op]]:
    """The per-example map (augmentation, then normalisation) and the batch-level ops."""
    example_ops, batch_ops = augment_lib.build_ops(augment, info)
    mean = np.asarray(info.mean, np.float64) if normalize else np.zeros(len(info.mean))
    std = np.asarray(info.std, np.float64) if normalize else np.ones(len(info.std))
    preprocess = _Preprocess(
        tuple(example_ops),
        train,
        _derive_seed(seed, 1),
        (1.0 / (255.0 * std)).astype(np.float32),
        (-mean / std).astype(np.float32),
    )
    return preprocess, batch_ops


def _stream(
    ds: grain.MapDataset, batch_size: int, train: bool, num_epochs: int | None, seed: int
) -> tuple[grain.MapDataset, int, int | None]:
    """The global stream of records (train: shuffled epochs; eval: padded single pass), its
    steps per epoch and its number of batches (None: forever)."""
    n = len(ds)
    if not train:
        steps_per_epoch = -(-n // batch_size)
        return PaddedSource(ds, steps_per_epoch * batch_size), steps_per_epoch, steps_per_epoch
    steps_per_epoch = n // batch_size
    if steps_per_epoch == 0:
        raise ValueError(
            f"batch_size={batch_size} is larger than the {n} training records: "
            "no full batch per epoch"
        )
    kept = steps_per_epoch * batch_size
    length = _INFINITE // kept * kept if num_epochs is None else num_epochs * kept
    num_batches = None if num_epochs is None else num_epochs * steps_per_epoch
    return ShuffledEpochs(ds, length, kept, _derive_seed(seed, 0)), steps_per_epoch, num_batches


def _to_iter(
    ds: grain.MapDataset, read_threads: int, prefetch_buffer_size: int, worker_count: int,
    worker_buffer_size: int,
) -> grain.IterDataset:
    iter_ds = ds.to_iter_dataset(
        grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=prefetch_buffer_size)
    )
    if worker_count > 0:
        _ensure_absl_flags_parsed()
        iter_ds = iter_ds.mp_prefetch(
            grain.MultiprocessingOptions(
                num_workers=worker_count, per_worker_buffer_size=worker_buffer_size
            )
        )
    return iter_ds


def make_pipeline(
    source: Any,
    *,
    batch_size: int,
    seed: int = 0,
    train: bool,
    num_epochs: int | None = None,
    augment: augment_lib.Spec = None,
    normalize: bool = True,
    process_index: int | None = None,
    process_count: int | None = None,
    worker_count: int = 0,
    worker_buffer_size: int = 2,
    read_threads: int = 0,
    prefetch_buffer_size: int = 4,
    info: DataInfo | None = None,
) -> BatchIterator:
    """A resumable iterator of process-local batches over `source` (see the module docstring).

    Args:
      source: a random-access source (`get_source(...)`): `len`, `[i]` and `.info`.
      batch_size: the GLOBAL batch size; each process yields batch_size // process_count rows.
      seed: seeds the shuffle, the augmentation and mixup/cutmix.
      train: True: shuffle, repeat, augment, drop each epoch's last partial batch.
        False: one pass in order, last batch padded (valid = 0), deterministic ops only.
      num_epochs: epochs of a training stream; None repeats forever. Ignored for eval.
      augment: an augmentation spec (`cnnjax.data.augment.parse_spec`), e.g.
        "random_crop(padding=4)|hflip|mixup(alpha=0.2)". Deterministic ops (resize,
        center_crop) and the eval counterparts of random ones also run when train=False.
      normalize: subtract the data set's mean and divide by its std (else only /255).
      process_index, process_count: this process's place among all processes (default:
        `jax.process_index()`, `jax.process_count()`).
      worker_count: Grain worker processes (0: in this process); the batches do not depend on it.
      worker_buffer_size: batches buffered per worker process.
      read_threads: threads preparing examples in this process (0: none). NumPy and PIL
        release the GIL on large images, so threads help large augmented images and can slow
        small ones (figures: README "Data sets", benchmarks/data_pipeline.py).
      prefetch_buffer_size: examples prepared ahead by the threads.
      info: metadata to use instead of `source.info` (e.g. to override mean/std).
    """
    _check_arguments(batch_size, seed, worker_count, read_threads, train, num_epochs)
    info = _source_info(source, info)
    process_index, process_count, local_batch = _process_layout(
        batch_size, process_index, process_count
    )
    preprocess, batch_ops = _preprocessing(augment, info, train, normalize, seed)
    stream, steps_per_epoch, num_batches = _stream(
        grain.MapDataset.source(source), batch_size, train, num_epochs, seed
    )
    ds = LocalBatches(stream, source, num_batches=len(stream) // batch_size,
                      global_batch=batch_size, local_batch=local_batch,
                      process_index=process_index, prepare=preprocess)
    if train and batch_ops:
        mixer = _MixBatch(tuple(batch_ops), info.num_classes)
        ds = ds.random_map(mixer, seed=_derive_seed(seed, 2, process_index))
    fingerprint = dict(
        records=len(source), batch_size=batch_size, seed=seed, train=train,
        num_epochs=num_epochs, process_index=process_index, process_count=process_count,
        worker_count=worker_count,
    )
    return BatchIterator(
        _to_iter(ds, read_threads, prefetch_buffer_size, worker_count, worker_buffer_size),
        info=info, steps_per_epoch=steps_per_epoch, num_batches=num_batches,
        fingerprint=fingerprint,
    )
