"""Convert a folder of images (the `image_folder` layout) to one `.npz` archive (`npz` layout).

    python -m experiments.folder_to_npz IMAGE_DIR OUT.npz [--image_size=28] [--channels=1]
        [--fit=resize|crop] [--val_fraction=0.1] [--test_fraction=0.1] [--split_seed=0]

IMAGE_DIR is `DIR/<class>/*` or `DIR/{train,val,test}/<class>/*` (`cnnjax.data.image_folder`);
OUT.npz gets `train_images`, `train_labels`, `val_images`, `val_labels`, `test_images`,
`test_labels` (uint8 images (N, H, W, C), int64 labels; empty splits are left out) and
`class_names`, which `--config.dataset=npz --config.data_dir=OUT.npz` reads
(`cnnjax.data.npz_source`). Exit codes: 0 written, 1 a bad folder, 2 a bad command line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cnnjax.data.image_folder import image_folder_source

__all__ = ["convert", "main"]


def convert(image_dir: Path, out: Path, **options: object) -> dict[str, int]:
    """Write `out` from the image folder `image_dir`; returns {split: number of images}."""
    arrays: dict[str, np.ndarray] = {}
    counts = {}
    for split in ("train", "val", "test"):
        try:
            source = image_folder_source(split, image_dir, **options)
        except ValueError as e:
            if split != "train" and "is empty" in str(e):
                continue
            raise
        arrays[f"{split}_images"] = np.stack([source[i]["image"] for i in range(len(source))])
        arrays[f"{split}_labels"] = source.labels.astype(np.int64)
        arrays["class_names"] = np.asarray(source.info.class_names)
        counts[split] = len(source)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line (argv[0] is the program name) and convert; the exit code."""
    argv = sys.argv if argv is None else argv
    parser = argparse.ArgumentParser(prog="experiments.folder_to_npz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--image_size", type=int, default=None,
                        help="square size (default: the first training image's size)")
    parser.add_argument("--channels", type=int, default=3, choices=(1, 3, 4))
    parser.add_argument("--fit", default="resize", choices=("resize", "crop"))
    parser.add_argument("--val_fraction", type=float, default=0.1)
    parser.add_argument("--test_fraction", type=float, default=0.1)
    parser.add_argument("--split_seed", type=int, default=0)
    try:
        args = parser.parse_args(list(argv[1:]))
    except SystemExit as e:  # argparse printed the usage message
        return int(e.code or 0)
    options = {k: v for k, v in vars(args).items() if k not in ("image_dir", "out")}
    try:
        counts = convert(args.image_dir, args.out, **options)
    except (ValueError, TypeError, OSError) as e:
        print(f"experiments.folder_to_npz: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: " + ", ".join(f"{s} {n}" for s, n in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
