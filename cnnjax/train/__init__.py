"""The step library: train state, tasks, optimizers, schedules, data-parallel steps, EMA.

What a whole run adds (config, loop, checkpoints, evaluation, reporting, trackers) is the run
framework in `cnnjax.train.runner`, built on this package; nothing here imports it.

Ten lines to train (any strategy: "jit", "shard_map", "pmap"):

    from cnnjax import models, train
    mesh = train.make_mesh()
    model = models.create("resnet_tiny", num_classes=10)
    task = train.classification(label_smoothing=0.1)
    tx = train.make_optimizer({"name": "adamw", "learning_rate": 1e-3, "weight_decay": 1e-4})
    state = train.create_train_state(model, tx, 0, (8, 32, 32, 3), mesh=mesh)
    step = train.make_train_step(model, task, tx, strategy="shard_map", mesh=mesh)
    for i, batch in enumerate(batches):   # dicts of numpy arrays: image, label
        state, metrics = step(state, batch)
        train.check_finite(metrics, i)
"""

from cnnjax.train.ema import EmaSpec, select_weights
from cnnjax.train.metrics import NonFiniteError, check_finite, is_finite, merge_metrics
from cnnjax.train.optim import (
    OPTIMIZERS,
    SCHEDULES,
    decay_mask,
    make_optimizer,
    make_schedule,
    path_name,
)
from cnnjax.train.parallel import (
    DATA_AXIS,
    batch_sharding,
    make_mesh,
    pmap_batch,
    replicate,
    replicated_sharding,
    shard_batch,
    stack_for_pmap,
    unstack_from_pmap,
)
from cnnjax.train.state import TrainState, create_train_state, param_count
from cnnjax.train.steps import (
    PRECISIONS,
    STRATEGIES,
    dropout_key,
    make_eval_step,
    make_train_step,
    prepare_model,
)
from cnnjax.train.tasks import (
    Task,
    binary,
    classification,
    combine_loss_terms,
    confusion_metrics,
    finalize_pairs,
    segmentation,
)

__all__ = [
    "DATA_AXIS",
    "OPTIMIZERS",
    "PRECISIONS",
    "SCHEDULES",
    "STRATEGIES",
    "EmaSpec",
    "NonFiniteError",
    "Task",
    "TrainState",
    "batch_sharding",
    "binary",
    "check_finite",
    "classification",
    "combine_loss_terms",
    "confusion_metrics",
    "create_train_state",
    "decay_mask",
    "dropout_key",
    "finalize_pairs",
    "is_finite",
    "make_eval_step",
    "make_mesh",
    "make_optimizer",
    "make_schedule",
    "make_train_step",
    "merge_metrics",
    "param_count",
    "path_name",
    "pmap_batch",
    "prepare_model",
    "replicate",
    "replicated_sharding",
    "segmentation",
    "select_weights",
    "shard_batch",
    "stack_for_pmap",
    "unstack_from_pmap",
]
