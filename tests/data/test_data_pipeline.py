"""Grain pipelines: determinism, epochs, eval padding, resumption, process sharding, workers,
and placement on an 8-device CPU mesh."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from cnnjax.data import ArraySource, DataInfo, get_source, make_pipeline
from cnnjax.train import make_mesh, shard_batch

INFO = DataInfo(
    name="indexed",
    task="classification",
    num_classes=10,
    class_names=tuple("0123456789"),
    image_shape=(6, 6, 1),
    mean=(0.0,),
    std=(1.0,),
)


def indexed_source(n: int) -> ArraySource:
    """Record i is an image filled with i (so batches reveal which records they hold)."""
    images = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, 6, 6, 1))
    return ArraySource(np.ascontiguousarray(images), labels=np.arange(n) % 10, info=INFO)


def ids(batch) -> list[int]:
    return [int(v) for v in np.rint(batch["image"][:, 0, 0, 0] * 255)]


def take(iterator, count):
    return [next(iterator) for _ in range(count)]


def assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def test_batch_contract_and_normalisation():
    source = get_source("shapes", "train", num_examples=32, image_size=12)
    batch = next(make_pipeline(source, batch_size=8, seed=0, train=False))
    assert batch["image"].shape == (8, 12, 12, 3) and batch["image"].dtype == np.float32
    assert batch["label"].shape == (8,) and batch["label"].dtype == np.int32
    assert batch["valid"].dtype == np.float32 and np.all(batch["valid"] == 1)
    mean, std = np.asarray(source.info.mean), np.asarray(source.info.std)
    for row in range(8):  # eval order is source order: row i is record i
        expected = (source[row]["image"] / 255.0 - mean) / std
        np.testing.assert_allclose(batch["image"][row], expected, rtol=1e-5, atol=1e-5)
        assert batch["label"][row] == source[row]["label"]
    seg = get_source("shapes_seg", "train", num_examples=8, image_size=12)
    batch = next(make_pipeline(seg, batch_size=4, seed=0, train=True, augment="segmentation"))
    assert batch["mask"].shape == (4, 12, 12) and batch["mask"].dtype == np.int32


def test_same_seed_same_batches_other_seed_differs():
    source = get_source("shapes", "train", num_examples=40, image_size=12)
    spec = "random_crop(padding=2)|hflip|brightness|mixup(alpha=0.4)"
    run = lambda seed: take(  # noqa: E731
        make_pipeline(source, batch_size=8, seed=seed, train=True, augment=spec), 7
    )
    assert_batches_equal(run(3), run(3))
    pairs = zip(run(3), run(4), strict=True)
    assert any(not np.array_equal(a["image"], b["image"]) for a, b in pairs)


def test_train_epochs_shuffle_and_drop_each_partial_batch():
    n, batch_size = 50, 8
    iterator = make_pipeline(indexed_source(n), batch_size=batch_size, seed=1, train=True,
                             num_epochs=3)
    assert iterator.steps_per_epoch == 6 and len(iterator) == 18
    batches = list(iterator)
    assert len(batches) == 18
    epochs = [[i for b in batches[e * 6 : (e + 1) * 6] for i in ids(b)] for e in range(3)]
    for epoch in epochs:
        assert len(epoch) == 48 and len(set(epoch)) == 48 and set(epoch) <= set(range(n))
    assert epochs[0] != epochs[1] and epochs[0] != sorted(epochs[0])  # reshuffled per epoch
    assert all(np.all(b["valid"] == 1) for b in batches)


def test_eval_one_pass_in_order_padded():
    n = 21
    iterator = make_pipeline(indexed_source(n), batch_size=8, seed=0, train=False)
    batches = list(iterator)
    assert len(batches) == 3 == len(iterator)
    assert all(b["image"].shape == (8, 6, 6, 1) for b in batches)
    valid = np.concatenate([b["valid"] for b in batches])
    seen = np.concatenate([ids(b) for b in batches])
    np.testing.assert_array_equal(valid, [1] * n + [0] * 3)
    np.testing.assert_array_equal(seen[:n], np.arange(n))


@pytest.mark.parametrize("read_threads", [0, 2])
def test_restored_iterator_continues_exactly(read_threads):
    source = get_source("shapes", "train", num_examples=30, image_size=12)
    kwargs = dict(batch_size=4, seed=7, train=True, read_threads=read_threads,
                  augment="random_resized_crop(size=10)|hflip|cutmix")
    reference = take(make_pipeline(source, **kwargs), 12)  # crosses epoch boundaries (7/epoch)
    first = make_pipeline(source, **kwargs)
    take(first, 5)
    state = json.loads(json.dumps(first.get_state()))  # must survive a JSON checkpoint
    resumed = make_pipeline(source, **kwargs)
    resumed.set_state(state)
    assert_batches_equal(take(resumed, 7), reference[5:])
    assert_batches_equal(take(first, 7), reference[5:])


def test_state_from_another_pipeline_is_rejected():
    source = indexed_source(20)
    state = make_pipeline(source, batch_size=4, seed=0, train=True).get_state()
    other = make_pipeline(source, batch_size=4, seed=1, train=True)
    with pytest.raises(ValueError, match="different pipeline"):
        other.set_state(state)
    with pytest.raises(ValueError, match="get_state"):
        other.set_state({"next_index": 3})


@pytest.mark.parametrize("train", [True, False])
def test_process_sharding_partitions_every_epoch(train):
    n, batch_size, processes = 45, 12, 3
    source = indexed_source(n)
    common = dict(batch_size=batch_size, seed=5, train=train, num_epochs=2)
    whole = list(make_pipeline(source, process_index=0, process_count=1, **common))
    shards = [
        list(make_pipeline(source, process_index=p, process_count=processes, **common))
        for p in range(processes)
    ]
    assert all(len(s) == len(whole) for s in shards)
    for step, global_batch in enumerate(whole):
        parts = [s[step] for s in shards]
        assert all(len(ids(part)) == batch_size // processes for part in parts)
        # the processes' rows, in process order, are exactly the single-process global batch
        np.testing.assert_array_equal([i for p in parts for i in ids(p)], ids(global_batch))
        np.testing.assert_array_equal(np.concatenate([p["valid"] for p in parts]),
                                      global_batch["valid"])
    per_epoch = len(whole) // 2 if train else len(whole)  # eval ignores num_epochs
    for start in range(0, len(whole), per_epoch):
        seen = [i for s in shards for b in s[start : start + per_epoch]
                for i, v in zip(ids(b), b["valid"], strict=True) if v]
        expected = n if not train else (n // batch_size) * batch_size
        assert len(seen) == expected == len(set(seen))  # no overlap, no loss


def test_augmentation_does_not_depend_on_process_count():
    source = get_source("shapes_seg", "train", num_examples=20, image_size=12)
    common = dict(batch_size=8, seed=9, train=True, augment="segmentation|brightness")
    whole = take(make_pipeline(source, process_index=0, process_count=1, **common), 5)
    parts = [take(make_pipeline(source, process_index=p, process_count=4, **common), 5)
             for p in range(4)]
    for step in range(5):
        for key in ("image", "mask", "valid"):
            joined = np.concatenate([parts[p][step][key] for p in range(4)])
            np.testing.assert_array_equal(joined, whole[step][key])


def test_results_do_not_depend_on_threads():
    source = get_source("shapes", "train", num_examples=24, image_size=12)
    kwargs = dict(batch_size=4, seed=2, train=True, augment="crop_flip|contrast")
    plain = take(make_pipeline(source, **kwargs), 8)
    threaded = take(make_pipeline(source, read_threads=3, **kwargs), 8)
    assert_batches_equal(plain, threaded)


@pytest.mark.slow  # starts worker processes (~8 s on 2 cores)
def test_worker_processes_give_the_same_batches_and_resume():
    source = get_source("shapes", "train", num_examples=24, image_size=12)
    kwargs = dict(batch_size=4, seed=2, train=True, augment="crop_flip|contrast")
    plain = take(make_pipeline(source, **kwargs), 10)
    workers = make_pipeline(source, worker_count=2, **kwargs)
    try:
        assert_batches_equal(plain[:6], take(workers, 6))
        state = json.loads(json.dumps(workers.get_state()))
    finally:
        workers.close()
    resumed = make_pipeline(source, worker_count=2, **kwargs)
    try:
        resumed.set_state(state)
        assert_batches_equal(plain[6:], take(resumed, 4))
    finally:
        resumed.close()


def test_pipeline_batches_shard_onto_a_cpu_mesh():
    """The pipeline's process-local batch placed with the trainer's `shard_batch` (its own
    tests cover the general cases): every row lands on the device that owns it."""
    assert len(jax.devices()) == 8
    mesh = make_mesh()
    batch = next(make_pipeline(indexed_source(40), batch_size=16, seed=0, train=False))
    placed = shard_batch(batch, mesh)
    for key, value in batch.items():
        assert placed[key].shape == value.shape
        np.testing.assert_array_equal(np.asarray(placed[key]), value)
        assert {s.data.shape[0] for s in placed[key].addressable_shards} == {2}
    assert placed["image"].sharding.spec == jax.sharding.PartitionSpec("data")
    odd = next(make_pipeline(indexed_source(40), batch_size=6, seed=0, train=False))
    with pytest.raises(ValueError, match="multiple of the 8 local devices"):
        shard_batch(odd, mesh)


def test_bad_arguments():
    source = indexed_source(10)
    with pytest.raises(ValueError, match="batch_size=16 is larger"):
        make_pipeline(source, batch_size=16, train=True)
    with pytest.raises(ValueError, match="divisible by process_count=3"):
        make_pipeline(source, batch_size=4, train=True, process_index=0, process_count=3)
    with pytest.raises(ValueError, match="process_index=3"):
        make_pipeline(source, batch_size=3, train=True, process_index=3, process_count=3)
    with pytest.raises(TypeError, match=r"seed must be an int, got float 1\.5"):
        make_pipeline(source, batch_size=2, seed=1.5, train=True)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        make_pipeline(source, batch_size=0, train=True)
    with pytest.raises(ValueError, match="unknown"):
        make_pipeline(source, batch_size=2, train=True, augment="rotate90")
    seg = get_source("shapes_seg", "train", num_examples=8)
    with pytest.raises(ValueError, match="only for classification"):
        make_pipeline(seg, batch_size=2, train=True, augment="mixup")
