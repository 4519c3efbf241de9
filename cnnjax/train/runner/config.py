"""The run configuration: `default_config()` (every field a run uses), `resolve_config` and
`prepare_config` (validation: `cnnjax.train.runner.config_checks`).

Configs are `ml_collections.ConfigDict`s, overridable from the command line the way the Flax
examples and big_vision do (`--config.optimizer.learning_rate=0.01`). Fields:

    seed                   root of every random number of the run (init, dropout, data order)
    imports                your own code to import before anything is built: module names or
                           .py files that register models, data sets, augmentations...
                           (saved absolute in config.json; see `cnnjax.train.runner.user_code`)
    model, model_options   registry name (`cnnjax.models.list_models()`) and its options
    dataset, dataset_options, data_dir
                           `cnnjax.data.get_source` name, options and archive folder (for
                           `image_folder`/`image_folder_seg`: the folder of images)
    dataset_info           what the run learned about its data (class names, image shape,
                           mean/std, train size): empty = filled from the train split when the
                           run is built, then saved in config.json, so export and predict need
                           no data (`cnnjax.train.runner.dataset_info`)
    train_split, eval_split, test_split
                           splits for training, periodic validation (selects the best
                           checkpoint) and the final test (None: skip)
    batch_size             GLOBAL batch size (all devices, all processes)
    eval_batch_size        global eval batch size (None: batch_size)
    num_epochs, num_train_steps
                           training length; if both are set, num_train_steps wins
    optimizer.*            `cnnjax.train.make_optimizer` fields: name, learning_rate, momentum,
                           nesterov, weight_decay, grad_clip_norm, accumulate_steps, freeze,
                           lr_multipliers ((pattern, multiplier) pairs, first match wins), ...
                           (None means the optimizer's default)
    schedule.*             name (constant | cosine | warmup_cosine | step | one_cycle),
                           warmup_steps, final_learning_rate, boundaries, step_size,
                           decay_factor, pct_start, div_factor, final_div_factor
    eval_every_steps       validate every k steps (None: once per epoch; 0: only at the end)
    checkpoint_every_steps checkpoint every k steps (None: with each validation; 0: only at
                           the end and on preemption). Validation steps are always
                           checkpointed (with their metrics) when keep_best > 0.
    log_every_steps        train metrics to metrics.jsonl / TensorBoard / progress every k steps
    trackers               where metrics, params and plots go: ("jsonl", "tensorboard") by
                           default; add "mlflow" and/or "wandb" (pip install
                           'cnnjax[trackers]'); "jsonl" is always needed
                           (`cnnjax.train.runner.trackers`)
    tracker_options.<tracker>.<option>
                           e.g. mlflow.tracking_uri, mlflow.experiment_name, mlflow.run_name,
                           wandb.project, wandb.entity, wandb.mode, wandb.name, wandb.dir
                           (None: the tracker's default)
    keep_checkpoints       keep the latest N checkpoints
    keep_best, best_metric, best_mode
                           also keep the K best by a validation metric (None: "accuracy" for
                           classification, "mean_iou" for segmentation; mode "max", or "min"
                           for names containing "loss")
    parallel.strategy      "jit" | "shard_map" | "pmap"
    parallel.num_devices   devices to use (None: every device)
    precision              "float32" | "bfloat16" (compute; master weights stay float32)
    task.name              None: from the data set ("classification" | "segmentation");
                           or "binary"
    task.label_smoothing, task.segmentation_loss (registered terms joined by "+", e.g.
                           "ce", "dice", "ce+dice(smooth=0.1)"; `train.tasks.losses`),
    task.classification_loss
                           the same for classification ("ce": cross-entropy with
                           task.label_smoothing)
    task.ignore_label, task.dice_smooth
    metrics                evaluation metrics reported for train/val/test rows, registered names
                           with options: e.g. ("accuracy", "balanced_accuracy",
                           "top_k_accuracy(k=3)") or ("mean_iou", "frequency_weighted_iou");
                           None: the task's default (`cnnjax.train.tasks.metric_defs`)
    augment                `cnnjax.data.augment` spec string, e.g. "random_crop(padding=4)|hflip"
    data.worker_count, data.read_threads, data.prefetch_buffer_size, data.normalize
    data.prefetch_batches  training batches prepared and placed on the devices ahead of the
                           step by a background thread (2; batches do not depend on it)
    compilation_cache      keep compiled steps in JAX's persistent cache (True; the folder is
                           $CNNJAX_CACHE_DIR/xla or ~/.cache/cnnjax/xla, see
                           `cnnjax.train.runner.compile_cache`); $CNNJAX_COMPILATION_CACHE=0
                           also turns it off
    async_checkpointing    write checkpoints in a background thread (True)
    fresh_start            False (default): a workdir that holds an earlier run's history
                           (metrics rows, checkpoints, corrupt checkpoints) but no usable
                           checkpoint is refused rather than started over. True: start at
                           step 0 anyway; the old history is moved, not deleted, to
                           `WORKDIR/previous_runs/<UTC time>/`
    init_from              a NEW run starts from these weights: a torchvision/timm file
                           (.pth/.pt/.safetensors/.npz) or another run's workdir (best, else
                           latest; "WORKDIR:latest", ":best", ":STEP"). Ignored on resume.
                           See `cnnjax.train.runner.init_from`.
    init_exclude           fnmatch patterns of "/"-joined variable paths left freshly initialised
    freeze_batch_stats     fnmatch patterns of batch-norm statistics paths ("layer1_0/*",
                           "*" for all) that train steps leave unchanged (frozen backbone BN)
    ema_decay              0 (default: off) or d in (0, 1), e.g. 0.999: keep an exponential
                           moving average of the weights and batch statistics in the train
                           state, with warm-up d_t = min(d, (1 + t) / (10 + t)) over optimizer
                           updates t (`cnnjax.train.ema`); validation, eval, predict and export
                           then use the EMA weights unless --weights=raw
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ml_collections
from ml_collections import config_dict

from cnnjax.train.determinism import configure_determinism
from cnnjax.train.runner.config_checks import validate_config
from cnnjax.train.runner.trackers import DEFAULT_TRACKERS, TRACKERS
from cnnjax.train.runner.user_code import import_user_code

__all__ = [
    "default_config",
    "prepare_config",
    "resolve_config",
    "validate_config",
]

_FREE_FORM = ("model_options", "dataset_options", "dataset_info", "tracker_options")


def _optimizer_defaults() -> ml_collections.ConfigDict:
    """The `optimizer` group (None: the optimizer's own default)."""
    g = ml_collections.ConfigDict()
    g.name = "adamw"
    g.learning_rate = 1e-3
    g.momentum = config_dict.placeholder(float)
    g.nesterov = config_dict.placeholder(bool)
    g.b1 = config_dict.placeholder(float)
    g.b2 = config_dict.placeholder(float)
    g.eps = config_dict.placeholder(float)
    g.weight_decay = 0.0
    g.grad_clip_norm = config_dict.placeholder(float)
    g.accumulate_steps = 1
    g.freeze = ()
    g.lr_multipliers = ()
    g.trust_coefficient = config_dict.placeholder(float)
    return g


def _schedule_defaults() -> ml_collections.ConfigDict:
    """The `schedule` group (None: the schedule's own default)."""
    g = ml_collections.ConfigDict()
    g.name = "constant"
    g.warmup_steps = 0
    g.final_learning_rate = config_dict.placeholder(float)
    g.boundaries = config_dict.placeholder(tuple)
    g.step_size = config_dict.placeholder(int)
    g.decay_factor = config_dict.placeholder(float)
    g.pct_start = config_dict.placeholder(float)
    g.div_factor = config_dict.placeholder(float)
    g.final_div_factor = config_dict.placeholder(float)
    return g


def _tracker_option_defaults() -> ml_collections.ConfigDict:
    """`tracker_options`: one group per registered tracker that takes options, every option
    None (the tracker's default), so that `--config.tracker_options.mlflow.tracking_uri=...`
    works from the command line."""
    g = ml_collections.ConfigDict()
    for name in TRACKERS.names():
        if TRACKERS.get(name).options:
            g[name] = ml_collections.ConfigDict(
                {o: config_dict.placeholder(str) for o in TRACKERS.get(name).options})
    return g


def default_config() -> ml_collections.ConfigDict:
    """Every field a cnnjax run reads, with defaults that train `resnet_tiny` on `shapes`."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.imports = ()
    c.model = "resnet_tiny"
    c.model_options = ml_collections.ConfigDict()
    c.dataset = "shapes"
    c.dataset_options = ml_collections.ConfigDict()
    c.data_dir = config_dict.placeholder(str)
    c.dataset_info = ml_collections.ConfigDict()
    c.train_split = "train"
    c.eval_split = "val"
    c.test_split = config_dict.placeholder(str)
    c.test_split = "test"

    c.batch_size = 64
    c.eval_batch_size = config_dict.placeholder(int)
    c.num_epochs = config_dict.placeholder(int)
    c.num_epochs = 5
    c.num_train_steps = config_dict.placeholder(int)

    c.optimizer = _optimizer_defaults()
    c.schedule = _schedule_defaults()

    c.eval_every_steps = config_dict.placeholder(int)
    c.checkpoint_every_steps = config_dict.placeholder(int)
    c.log_every_steps = 50
    c.trackers = DEFAULT_TRACKERS
    c.tracker_options = _tracker_option_defaults()
    c.keep_checkpoints = 3
    c.keep_best = 1
    c.best_metric = config_dict.placeholder(str)
    c.best_mode = config_dict.placeholder(str)
    c.async_checkpointing = True
    c.compilation_cache = True
    c.fresh_start = False

    c.parallel = ml_collections.ConfigDict()
    c.parallel.strategy = "jit"
    c.parallel.num_devices = config_dict.placeholder(int)
    c.precision = "float32"

    c.task = ml_collections.ConfigDict()
    c.task.name = config_dict.placeholder(str)
    c.task.label_smoothing = 0.0
    c.task.segmentation_loss = "ce"
    c.task.classification_loss = "ce"
    c.task.ignore_label = config_dict.placeholder(int)
    c.task.dice_smooth = 1.0
    c.metrics = config_dict.placeholder(tuple)

    c.augment = config_dict.placeholder(str)
    c.data = ml_collections.ConfigDict()
    c.data.worker_count = 0
    c.data.read_threads = 0
    c.data.prefetch_buffer_size = 4
    c.data.prefetch_batches = 2
    c.data.normalize = True

    c.init_from = config_dict.placeholder(str)
    c.init_exclude = ()
    c.freeze_batch_stats = ()
    c.ema_decay = 0.0
    return c


def _merge(defaults: ml_collections.ConfigDict, user: Mapping[str, Any], prefix: str) -> None:
    for key, value in user.items():
        name = f"{prefix}{key}"
        if key not in defaults:
            raise ValueError(
                f"unknown config field {name!r}; valid fields here: {sorted(defaults.keys())}"
            )
        if key in _FREE_FORM and not prefix:
            defaults[key] = ml_collections.ConfigDict(dict(value or {}))
        elif isinstance(defaults[key], ml_collections.ConfigDict):
            if not isinstance(value, Mapping | ml_collections.ConfigDict):
                raise ValueError(f"config field {name!r} must be a group of fields, got {value!r}")
            _merge(defaults[key], value, f"{name}.")
        else:
            try:
                defaults[key] = value
            except TypeError as e:
                raise TypeError(f"config field {name!r}={value!r}: {e}") from e


def resolve_config(
    config: Mapping[str, Any] | ml_collections.ConfigDict,
) -> ml_collections.ConfigDict:
    """`default_config()` updated with `config`; an unknown field (a typo) is a `ValueError`.

    `config.imports` is imported here, first, so that its registrations exist when the
    config's names are checked and its parts built.
    """
    user = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    resolved = default_config()
    _merge(resolved, user, "")
    imports = resolved.imports
    if isinstance(imports, str):
        imports = (imports,)
    resolved.imports = import_user_code(tuple(imports or ()))
    return resolved


def prepare_config(
    config: Mapping[str, Any] | ml_collections.ConfigDict,
) -> ml_collections.ConfigDict:
    """What an entry point does once per run, before any data or device work: set the
    determinism switches (`configure_determinism`, which must precede the backend's start,
    and validation starts it), then `resolve_config` and `validate_config`. Everything below
    the entry point takes the returned config as it is."""
    configure_determinism()
    resolved = resolve_config(config)
    validate_config(resolved)
    return resolved
