"""Batches made as a whole (`LocalBatches`: one gather, per-row augmentation seeded by stream
position, one normalisation) equal batches made row by row through Grain's own `random_map`
(what `make_pipeline` did before, so earlier runs' batches are reproduced), bitwise, for
training and evaluation streams, with and without augmentation, on every process of a
multi-process layout."""

from __future__ import annotations

import grain
import numpy as np
import pytest
from test_data_pipeline import indexed_source

from cnnjax.data import augment as augment_lib
from cnnjax.data import get_source, make_pipeline
from cnnjax.data.datasets import PaddedSource, ShuffledEpochs
from cnnjax.data.pipeline import _derive_seed, seek
from cnnjax.data.transforms import apply_ops


def reference_batches(source, *, batch_size, seed, train, augment, process_index,
                      process_count, count):
    """The first `count` local batches, row by row with Grain's random_map (independent of
    `LocalBatches` and `read_records`)."""
    info = source.info
    example_ops, _ = augment_lib.build_ops(augment, info)
    # the per-row normalisation make_pipeline used before (x * scale + offset, float32)
    scale = (1.0 / (255.0 * np.asarray(info.std, np.float64))).astype(np.float32)
    offset = (-np.asarray(info.mean, np.float64) / np.asarray(info.std)).astype(np.float32)
    n = len(source)
    base = grain.MapDataset.source(source)
    if train:
        kept = n // batch_size * batch_size
        stream = ShuffledEpochs(base, 10 * kept, kept, _derive_seed(seed, 0))
    else:
        stream = PaddedSource(base, -(-n // batch_size) * batch_size)

    def per_row(record, rng):
        record = apply_ops(example_ops, dict(record), rng, train)
        image = np.asarray(record["image"]).astype(np.float32)
        out = {"image": image * scale + offset}
        out["label"] = np.int32(record["label"])
        out["valid"] = np.float32(record.get("valid", 1.0))
        return out

    rows = stream.random_map(per_row, seed=_derive_seed(seed, 1))
    local = batch_size // process_count
    batches = []
    for s in range(count):
        start = s * batch_size + process_index * local
        items = [rows[start + j] for j in range(local)]
        batches.append({k: np.stack([it[k] for it in items]) for k in items[0]})
    return batches


AUGMENT = "random_crop(padding=2)|hflip|brightness(max_delta=0.2)"


@pytest.mark.parametrize("augment", [None, AUGMENT])
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize(("process_index", "process_count"), [(0, 1), (1, 2)])
def test_whole_batches_equal_row_by_row_batches(augment, train, process_index, process_count):
    source = get_source("shapes", "train", num_examples=37, image_size=10)
    kw = dict(batch_size=8, seed=11, train=train, augment=augment)
    count = 9 if train else 5  # train: past an epoch boundary; eval: the padded last batch
    pipeline = make_pipeline(source, **kw, process_index=process_index,
                             process_count=process_count)
    ours = [next(pipeline) for _ in range(count)]
    ref = reference_batches(source, **kw, process_index=process_index,
                            process_count=process_count, count=count)
    for a, b in zip(ours, ref, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key].dtype == b[key].dtype, key
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)  # bitwise
    if not train:  # the last global batch holds positions 32..39 of 37 records
        local = 8 // process_count
        positions = 32 + process_index * local + np.arange(local)
        np.testing.assert_array_equal(ours[-1]["valid"], (positions < 37).astype(np.float32))


def test_seek_gives_grains_generator_of_each_position():
    draws = grain.MapDataset.range(50).random_map(
        lambda i, rng: rng.integers(0, 2**31, size=3), seed=1234)
    rng = np.random.Generator(np.random.Philox(1234))
    for position in (0, 1, 17, 49, 3):
        np.testing.assert_array_equal(seek(rng, position).integers(0, 2**31, size=3),
                                      draws[position])


def test_array_source_take_equals_records_one_by_one():
    source = indexed_source(30)
    indices = np.array([4, 0, 29, 4, 13])
    taken = source.take(indices)
    for j, i in enumerate(indices):
        record = source[int(i)]
        for key in record:
            np.testing.assert_array_equal(taken[key][j], record[key])
