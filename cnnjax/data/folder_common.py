"""What the folder sources (`image_folder`, `image_folder_seg`) share: their options, the
seeded split of a folder without val/test sub-folders, and the one cached pass over the files.

The pass (`scan_once`) reads every file of every split once: it proves that all of them can
be decoded (an unreadable file fails before training, naming it) and measures what `DataInfo`
needs (the train split's per-channel mean/std after conversion and resizing, the largest mask
value). Its result is cached on disk under `$CNNJAX_CACHE_DIR` (default
`~/.cache/cnnjax/folders/`), keyed by the files' paths, sizes and modification times and the
options that change the pixels, so a second run (or a resume) opens no image to start.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnjax.data.image_files import FITS

__all__ = ["ENV_CACHE_DIR", "FolderOptions", "cache_dir", "fraction_split", "scan_once"]

ENV_CACHE_DIR = "CNNJAX_CACHE_DIR"
SPLITS = ("train", "val", "test")
_CACHE_VERSION = 1
_memory: dict[str, dict[str, Any]] = {}


@dataclasses.dataclass(frozen=True)
class FolderOptions:
    """The options of a folder source (`config.dataset_options`).

    image_size: (H, W) every image is brought to (an int: square); None: the size of the
      first training image.
    fit: "resize" (stretch to H x W) or "crop" (scale the shorter side, cut the centre).
    channels: 1 (grey), 3 (RGB) or 4 (RGBA): every file is converted to it (see
      `cnnjax.data.image_files`).
    val_fraction, test_fraction: the share of each class (segmentation: of all pairs) held out
      as "val" / "test" when the folder has no `val/` / `test/` sub-folder.
    split_seed: seeds those hold-outs.
    """

    image_size: tuple[int, int] | None = None
    fit: str = "resize"
    channels: int = 3
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    split_seed: int = 0

    @classmethod
    def of(cls, name: str, **options: Any) -> FolderOptions:
        """Checked options; TypeError naming an unknown one, ValueError for a bad value."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - fields)
        if unknown:
            raise TypeError(f"{name}: unknown option(s) {unknown}; expected {sorted(fields)}")
        size = options.get("image_size")
        if size is not None:
            size = (size, size) if isinstance(size, int) else tuple(size)
            if len(size) != 2 or not all(isinstance(s, int) and s >= 1 for s in size):
                raise ValueError(f"{name}: image_size={options['image_size']!r}; expected an "
                                 "int >= 1 or (height, width)")
            options["image_size"] = (int(size[0]), int(size[1]))
        opts = cls(**options)
        if opts.fit not in FITS:
            raise ValueError(f"{name}: fit={opts.fit!r}; expected one of {FITS}")
        if opts.channels not in (1, 3, 4):
            raise ValueError(f"{name}: channels={opts.channels!r}; expected 1, 3 or 4")
        for field in ("val_fraction", "test_fraction"):
            value = getattr(opts, field)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
                raise ValueError(f"{name}: {field}={value!r}; expected a number in [0, 1)")
        if opts.val_fraction + opts.test_fraction >= 1:
            raise ValueError(f"{name}: val_fraction + test_fraction = "
                             f"{opts.val_fraction + opts.test_fraction}; expected < 1")
        if isinstance(opts.split_seed, bool) or not isinstance(opts.split_seed, int) \
                or opts.split_seed < 0:
            raise ValueError(f"{name}: split_seed={opts.split_seed!r}; expected an int >= 0")
        return opts


def split_folders(root: Path) -> dict[str, Path] | None:
    """{split: folder} when `root` has a `train/` sub-folder (then `val/`, `test/` if there),
    else None (one folder, split by fractions)."""
    if not (root / "train").is_dir():
        return None
    return {s: root / s for s in SPLITS if (root / s).is_dir()}


def fraction_split(num: int, present: Sequence[str], opts: FolderOptions,
                   seed: Sequence[int]) -> dict[str, np.ndarray]:
    """Sorted positions of "train" and of each split NOT in `present`, drawn from `num` items:
    a permutation from default_rng([split_seed, *seed]) is cut into test (first
    round(test_fraction * num)), val (next round(val_fraction * num)) and train (the rest)."""
    perm = np.random.default_rng([opts.split_seed, *seed]).permutation(num)
    n_test = 0 if "test" in present else round(opts.test_fraction * num)
    n_val = 0 if "val" in present else round(opts.val_fraction * num)
    out = {"train": np.sort(perm[n_test + n_val:])}
    if "test" not in present:
        out["test"] = np.sort(perm[:n_test])
    if "val" not in present:
        out["val"] = np.sort(perm[n_test:n_test + n_val])
    return out


def cache_dir() -> Path:
    """Where scan results are kept: `$CNNJAX_CACHE_DIR`, else `~/.cache/cnnjax`, + /folders."""
    base = os.environ.get(ENV_CACHE_DIR) or Path.home() / ".cache" / "cnnjax"
    return Path(base) / "folders"


def _fingerprint(files: Sequence[Path], key: dict[str, Any]) -> str:
    h = hashlib.sha256(json.dumps({"v": _CACHE_VERSION, **key}, sort_keys=True).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def scan_once(files: Sequence[Path], key: dict[str, Any],
              scan: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`scan()` (a JSON-safe dict), computed once per file set and `key` and cached in memory
    and in `cache_dir()`; a cache that cannot be written is only a lost speed-up."""
    digest = _fingerprint(files, key)
    if digest in _memory:
        return _memory[digest]
    path = cache_dir() / f"{digest}.json"
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        result = scan()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            tmp.write_text(json.dumps(result))
            os.replace(tmp, path)
        except OSError:
            pass
    _memory[digest] = result
    return result


class ChannelStats:
    """Running per-channel sum and sum of squares of uint8 images, on the 0..1 scale."""

    def __init__(self, channels: int) -> None:
        self.total = np.zeros(channels, np.float64)
        self.squares = np.zeros(channels, np.float64)
        self.count = 0

    def add(self, image: np.ndarray) -> None:
        x = image.reshape(-1, image.shape[-1]).astype(np.float64) / 255.0
        self.total += x.sum(0)
        self.squares += np.square(x).sum(0)
        self.count += x.shape[0]

    def mean_std(self) -> tuple[list[float], list[float]]:
        """(mean, std) per channel; a std of 0 (constant images) becomes 1 (no division by 0)."""
        mean = self.total / max(self.count, 1)
        std = np.sqrt(np.maximum(self.squares / max(self.count, 1) - mean**2, 0.0))
        std = np.where(std > 1e-6, std, 1.0)
        return [round(float(m), 6) for m in mean], [round(float(s), 6) for s in std]
