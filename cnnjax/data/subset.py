"""Few-label training: a seeded subset of the labelled "train" records of any source.

Two options every data set accepts (`get_source(..., num_labelled=1000, subset_seed=0)`, or a
run config's `dataset_options`): `num_labelled` keeps that many records of the "train" split
(None, the default: all), `subset_seed` (default 0) draws them. Other splits are untouched, so
the same `dataset_options` serve every split; a "val" hold-out carved from the train records
(`val_size`) is carved first and the subset drawn from what remains.

For classification the subset is stratified: every class present in the split gets an equal
share, a class with fewer records than its share gives all of them and the rest is shared by
the others, and the remainder of the division goes one record each to the largest classes
(ties: the higher class id). For segmentation it is a uniform draw of records. The kept
records stay in their original order. The labels come from the source's `labels` attribute
when it has one (`ArraySource`, `ShapesSource`); otherwise every record is read once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnjax.checks import check_int

__all__ = ["SUBSET_OPTIONS", "SubsetSource", "labelled_subset", "subset_indices"]

SUBSET_OPTIONS = ("num_labelled", "subset_seed")
SUBSET_SPLIT = "train"


class SubsetSource:
    """The records `indices` (int (M,), positions in `source`) of `source`, same `info`."""

    def __init__(self, source: Any, indices: np.ndarray) -> None:
        self._source = source
        self.indices = np.asarray(indices, np.int64)
        self.info = source.info

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._source[int(self.indices[index])]

    @property
    def labels(self) -> np.ndarray | None:
        labels = getattr(self._source, "labels", None)
        return None if labels is None else np.asarray(labels)[self.indices]

    def __repr__(self) -> str:
        return f"SubsetSource({self._source!r}, num_records={len(self)})"


def _class_quota(counts: np.ndarray, total: int) -> np.ndarray:
    """Records to take per class: an equal share of `total`, capped by `counts` (the cap's
    excess shared by the others), remainder to the largest classes. Sums to `total` when
    `total <= counts.sum()` (water filling in increasing order of class size)."""
    take = np.zeros_like(counts)
    remaining = total
    order = np.argsort(counts, kind="stable")
    for done, c in enumerate(order):
        take[c] = min(counts[c], remaining // (len(order) - done))
        remaining -= take[c]
    return take


def subset_indices(
    labels: np.ndarray | None, num_records: int, num_labelled: int, seed: int
) -> np.ndarray:
    """Sorted positions of the kept records: stratified by `labels` (int (N,)) when given,
    else a uniform draw of `num_labelled` of `num_records`."""
    rng = np.random.default_rng(seed)
    if labels is None:
        return np.sort(rng.choice(num_records, num_labelled, replace=False))
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    take = _class_quota(counts, num_labelled)
    chosen = [
        rng.choice(np.flatnonzero(inverse == k), take[k], replace=False)
        for k in range(len(classes))
    ]
    return np.sort(np.concatenate(chosen))


def _labels_of(source: Any) -> np.ndarray | None:
    if hasattr(source, "labels"):
        labels = source.labels
        return None if labels is None else np.asarray(labels)
    if source.info.task != "classification":
        return None
    return np.array([int(source[i]["label"]) for i in range(len(source))], np.int64)


def labelled_subset(
    source: Any, split: str, *, num_labelled: int | None = None, subset_seed: int = 0
) -> Any:
    """`source` itself, or for split "train" with `num_labelled` set, a `SubsetSource` of
    `num_labelled` of its records (see the module docstring). The options are checked for
    every split, so a bad value fails whichever split is opened first."""
    check_int(subset_seed, "subset_seed", minimum=0)
    if num_labelled is None:
        return source
    check_int(num_labelled, "num_labelled")
    if split != SUBSET_SPLIT:
        return source
    if num_labelled > len(source):
        raise ValueError(
            f"num_labelled={num_labelled}: expected at most the {len(source)} records of "
            f"split {split!r} of {source.info.name!r} (after any val_size hold-out)"
        )
    indices = subset_indices(_labels_of(source), len(source), num_labelled, subset_seed)
    return SubsetSource(source, indices)
