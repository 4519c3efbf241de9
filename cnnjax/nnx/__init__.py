"""Flax NNX front end of the model zoo: `cnnjax.nnx.create(name, input_shape=..., **options)`.

    from flax import nnx
    import cnnjax.nnx as cnnx
    model = cnnx.create("resnet18", input_shape=(1, 32, 32, 3), num_classes=10,
                        stem="cifar", rngs=nnx.Rngs(0))
    logits = model(x)                                  # train mode (NNX default)
    model.eval(); logits = model(x)                    # running batch statistics
    variables = cnnx.to_linen_variables(model)         # {"params": ..., "batch_stats": ...}
    model = cnnx.load_run("runs/mnist", "best")        # a cnnjax run's checkpoint (EMA if any)

Parameter names, values and checkpoints are those of the Linen zoo (`cnnjax.nnx.zoo`,
`cnnjax.nnx.convert`).
"""

from cnnjax.nnx.convert import (
    from_linen_variables,
    load_linen_checkpoint,
    save_linen_checkpoint,
    to_linen_variables,
)
from cnnjax.nnx.runs import load_run
from cnnjax.nnx.zoo import COLLECTIONS, ZooModel, create

__all__ = [
    "COLLECTIONS",
    "ZooModel",
    "create",
    "from_linen_variables",
    "load_linen_checkpoint",
    "load_run",
    "save_linen_checkpoint",
    "to_linen_variables",
]
