"""Data sources, Grain input pipelines and augmentation.

    source = get_source("shapes", "train")          # or "mnist" (data_dir=...), "tfds:cifar10"
    batches = make_pipeline(source, batch_size=128, seed=0, train=True,
                            augment="random_crop(padding=4)|hflip")
    batch = next(batches)                           # process-local NumPy arrays
    state = batches.get_state()                     # JSON-serialisable; set_state resumes

`cnnjax.train.shard_batch(batch, mesh)` places a batch on a device mesh. See `sources`
(names, splits, `register_source`), `pipeline` (stream order, padding, process rows),
`augment` (the spec syntax and presets) and `transforms`, `geometric`, `mixing` (the ops).
"""

from cnnjax.data.arrays import ArraySource
from cnnjax.data.augment import OP_NAMES, PRESETS, build_ops, parse_spec
from cnnjax.data.info import DataInfo
from cnnjax.data.local import ENV_DATA_DIR
from cnnjax.data.pipeline import BatchIterator, make_pipeline
from cnnjax.data.shapes import ShapesSource
from cnnjax.data.signals import SignalsSource
from cnnjax.data.sources import NAMES, SOURCES, Source, get_info, get_source, register_source
from cnnjax.data.transforms import AUGMENTATIONS

__all__ = [
    "AUGMENTATIONS",
    "ENV_DATA_DIR",
    "NAMES",
    "OP_NAMES",
    "PRESETS",
    "SOURCES",
    "ArraySource",
    "BatchIterator",
    "DataInfo",
    "ShapesSource",
    "SignalsSource",
    "Source",
    "build_ops",
    "get_info",
    "get_source",
    "make_pipeline",
    "parse_spec",
    "register_source",
]
