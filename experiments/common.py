"""What `experiments.classify` and `experiments.segment` share: flags, modes, plots, prediction.

Both entry points are `main(argv) -> exit code` over `run(argv, task=...)`:

    python -m experiments.classify --workdir=runs/shapes                       # train (resumes)
    python -m experiments.classify --workdir=runs/mnist --config=experiments/configs/mnist.py \
        --config.optimizer.learning_rate=0.01
    python -m experiments.classify --workdir=runs/mnist --mode=eval --checkpoint=best --split=test
    python -m experiments.classify --workdir=runs/mnist --mode=predict --input=digits/ \
        --output=preds                                      # folder of images, .npy or .npz

Multi-host: every process runs the same command with `--coordinator_address=HOST:PORT
--num_processes=N --process_id=I` (or `--distributed` to let `jax.distributed.initialize`
read them from the cluster environment: SLURM, Cloud TPU, or JAX_COORDINATOR_ADDRESS /
JAX_NUM_PROCESSES / JAX_PROCESS_ID); it is called before anything touches a device.

Flags are parsed into a fresh `absl.flags.FlagValues` per call, so `main(argv)` can be called
many times in one process (tests) and both scripts can be imported together.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from absl import flags
from ml_collections import config_flags

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
MODES = ("train", "eval", "predict")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")
PLOT_EXAMPLES = 4  # segmentation overlays drawn per plot

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"


class UsageError(ValueError):
    """A bad command line (unknown flag, missing --workdir, bad --mode...): exit code 2."""


# --------------------------------------------------------------------------- flags


def define_flags(fv: flags.FlagValues, default_config: Path, argv: Sequence[str]) -> None:
    """Register the flags of both entry points on `fv` (`argv` lets ml_collections see
    `--config.field=value` overrides)."""
    config_flags.DEFINE_config_file(
        "config", str(default_config), "config file (a get_config() .py); --config.FIELD=VALUE "
        "overrides any field", flag_values=fv, sys_argv=list(argv),
        # New fields are accepted here so that --config.model_options.X adds a model option;
        # a typo elsewhere is still caught by resolve_config (unknown field -> ValueError).
        accept_new_attributes=True, lock_config=False,
    )
    flags.DEFINE_string("workdir", None, "run directory: config, metrics, plots, checkpoints; "
                        "an existing one is resumed", flag_values=fv)
    flags.DEFINE_enum("mode", "train", list(MODES), "train (resumes), eval or predict",
                      flag_values=fv)
    flags.DEFINE_string("checkpoint", "best", "eval/predict: best | latest | a step number",
                        flag_values=fv)
    flags.DEFINE_string("split", None, "eval: split to evaluate (default: the config's "
                        "test_split, else eval_split)", flag_values=fv)
    flags.DEFINE_string("input", None, "predict: a folder of images, a .npy or a .npz",
                        flag_values=fv)
    flags.DEFINE_string("input_key", None, "predict: the .npz array (default: 'images', "
                        "'test_images', else the first)", flag_values=fv)
    flags.DEFINE_string("output", None, "predict: output folder (default WORKDIR/predictions)",
                        flag_values=fv)
    flags.DEFINE_bool("plots", True, "write PNG plots after training and evaluation",
                      flag_values=fv)
    flags.DEFINE_string("coordinator_address", None, "multi-host: HOST:PORT of process 0 "
                        f"(or ${ENV_COORDINATOR})", flag_values=fv)
    flags.DEFINE_integer("num_processes", None, "multi-host: number of processes "
                         f"(or ${ENV_NUM_PROCESSES})", flag_values=fv)
    flags.DEFINE_integer("process_id", None, "multi-host: this process's index "
                         f"(or ${ENV_PROCESS_ID})", flag_values=fv)
    flags.DEFINE_bool("distributed", False, "call jax.distributed.initialize() with no "
                      "arguments (cluster auto-detection: SLURM, Cloud TPU, ...)", flag_values=fv)


def parse(argv: Sequence[str], default_config: Path) -> flags.FlagValues:
    """Parse `argv` (argv[0] is the program name) into a fresh FlagValues."""
    fv = flags.FlagValues()
    try:
        define_flags(fv, default_config, argv)  # loads the config file and its overrides
        fv(list(argv))
    except flags.Error as e:
        raise UsageError(str(e)) from e
    except (AttributeError, KeyError) as e:  # --config.FIELD naming no field of the config
        raise UsageError(f"unknown config field in an override: {e}") from e
    if not fv.workdir:
        raise UsageError("--workdir is required (the run directory; an existing one resumes)")
    return fv


# --------------------------------------------------------------------------- multi-host


def init_distributed(fv: flags.FlagValues) -> bool:
    """`jax.distributed.initialize` from the flags or the environment; True if called.

    Must run before anything touches a device (device counts, meshes, arrays).
    """
    address = fv.coordinator_address or os.environ.get(ENV_COORDINATOR)
    num = fv.num_processes if fv.num_processes is not None else _env_int(ENV_NUM_PROCESSES)
    pid = fv.process_id if fv.process_id is not None else _env_int(ENV_PROCESS_ID)
    import jax

    if address is None and num is None and pid is None:
        if fv.distributed:
            _cpu_collectives()
            jax.distributed.initialize()
            return True
        return False
    if address is None or num is None or pid is None:
        raise UsageError(
            "multi-host needs all three of --coordinator_address, --num_processes and "
            f"--process_id (or ${ENV_COORDINATOR}, ${ENV_NUM_PROCESSES}, ${ENV_PROCESS_ID}); "
            f"got coordinator_address={address!r}, num_processes={num!r}, process_id={pid!r}"
        )
    if not 0 <= pid < num:
        raise UsageError(f"--process_id={pid}; expected 0 <= process_id < num_processes={num}")
    _cpu_collectives()
    jax.distributed.initialize(coordinator_address=address, num_processes=num, process_id=pid)
    return True


def _cpu_collectives() -> None:
    """Gloo collectives for CPU devices across processes (only the CPU client reads it)."""
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError as e:
        raise UsageError(f"${name}={value!r}; expected an integer") from e


# --------------------------------------------------------------------------- configs


def check_task(config: Any, task: str, script: str) -> None:
    """A classification script given a segmentation data set (or back) fails before any work."""
    from cnnjax import data

    name = config.task.name
    if name is None:
        name = data.get_info(config.dataset, config.data_dir, **dict(config.dataset_options)).task
    kinds = {"classification": ("classification", "binary"), "segmentation": ("segmentation",)}
    if name not in kinds[task]:
        other = "segment" if task == "classification" else "classify"
        raise ValueError(
            f"config.dataset={config.dataset!r} is a {name} task; experiments.{script} runs "
            f"{task}: use `python -m experiments.{other}`"
        )


def run_config(fv: flags.FlagValues) -> Any:
    """The config to run: for eval/predict the workdir's own `config.json` unless --config
    is given explicitly; otherwise the --config file with its overrides, resolved."""
    from cnnjax.train.config import resolve_config
    from cnnjax.train.loop import load_config

    if fv.mode != "train" and not fv["config"].present:
        if (Path(fv.workdir) / "config.json").exists():
            return load_config(fv.workdir)
    return resolve_config(fv.config)


def which_checkpoint(value: str) -> str | int:
    if value in ("best", "latest"):
        return value
    try:
        step = int(value)
    except ValueError:
        step = -1
    if step < 0:
        raise UsageError(f"--checkpoint={value!r}; expected best, latest or a step number >= 0")
    return step


# --------------------------------------------------------------------------- restore


def restore(config: Any, workdir: Path, which: str | int) -> tuple[Any, Any, int]:
    """(loop Components, restored TrainState, step) of a workdir's checkpoint."""
    from cnnjax.checkpoint import CheckpointManager
    from cnnjax.train.loop import CHECKPOINT_DIR, build

    c = build(config)
    directory = workdir / CHECKPOINT_DIR
    if not directory.exists():
        raise FileNotFoundError(f"no checkpoints in {directory}: train first (--mode=train)")
    with CheckpointManager(directory, best_metric=c.best_metric, best_mode=c.best_mode,
                           read_only=True) as ckpt:
        if which == "best" and ckpt.best_step() is None:
            which = "latest"
        restored = ckpt.restore(c.init_state(), which)
    if restored is None:
        raise FileNotFoundError(f"no checkpoint {which!r} in {directory}")
    return c, restored.state, int(restored.step)


def local_view(c: Any, state: Any) -> tuple[Any, Any]:
    """(components, state) for prediction in THIS process only.

    Single process: unchanged. Multi-host: a mesh over this process's devices and the
    replicated state copied from its local shard, so process 0 can draw plots and write
    predictions without the other processes taking part.
    """
    import dataclasses

    import jax
    import numpy as np

    if jax.process_count() == 1:
        return c, state
    mesh = jax.sharding.Mesh(np.array(jax.local_devices()), c.mesh.axis_names)
    host = jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), state)
    return dataclasses.replace(c, mesh=mesh), host


def split_predictions(c: Any, state: Any, split: str, *, max_batches: int | None = None
                      ) -> dict[str, Any]:
    """Predicted labels (classes or masks) and targets over `split`, padding rows dropped.

    Uses the loop's evaluation pipeline (same preprocessing as `evaluate`) and
    `cnnjax.train.predict.predict` for the forward pass. Keys: images (preprocessed),
    targets, predictions.
    """
    import numpy as np

    from cnnjax import data as data_lib
    from cnnjax.train.predict import predict

    cfg = c.config
    source = data_lib.get_source(cfg.dataset, split, cfg.data_dir, **dict(cfg.dataset_options))
    batch_size = cfg.eval_batch_size or cfg.batch_size
    batches = data_lib.make_pipeline(
        source, batch_size=batch_size, seed=cfg.seed, train=False,
        augment=cfg.augment or None, normalize=cfg.data.normalize,
        process_index=0, process_count=1,  # the whole split, in this process
    )
    key = "label" if c.info.task == "classification" else "mask"
    images, targets, preds = [], [], []
    try:
        for i, batch in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            keep = np.asarray(batch["valid"]).astype(bool) if "valid" in batch else slice(None)
            labels = predict(c.model, state, batch["image"], mesh=c.mesh, batch_size=batch_size,
                             precision=cfg.precision, output="labels")
            preds.append(labels[keep])
            targets.append(np.asarray(batch[key])[keep])
            if max_batches is not None:
                images.append(np.asarray(batch["image"])[keep])
    finally:
        batches.close()
    out = {"targets": np.concatenate(targets), "predictions": np.concatenate(preds)}
    if images:
        out["images"] = np.concatenate(images)
    return out


# --------------------------------------------------------------------------- plots


def first_conv_kernel(model: Any, state: Any, input_shape: Sequence[int]) -> Any:
    """The kernel of the first convolution the model applies (call order, not name order).

    Found by intercepting module calls under `jax.eval_shape` (no compute); None if the model
    has no convolution.
    """
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    paths: list[tuple[str, ...]] = []

    def interceptor(next_fun: Any, args: Any, kwargs: Any, context: Any) -> Any:
        module = context.module
        name = type(module).__name__
        if (not paths and context.method_name == "__call__" and "Conv" in name
                and "Transpose" not in name and module.has_variable("params", "kernel")):
            paths.append(tuple(module.path))
        return next_fun(*args, **kwargs)

    variables = {"params": state.params, **dict(state.model_state or {})}
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    with nn.intercept_methods(interceptor):
        jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
    if not paths:
        return None
    node = state.params
    for part in paths[0]:
        node = node[part]
    return node["kernel"]


def write_plots(c: Any, state: Any, workdir: Path, split: str | None, *, tag: str = ""
                ) -> list[Path]:
    """Training curves, first-layer filters, and a confusion matrix (classification) or
    image/ground-truth/prediction overlays (segmentation) on `split`; returns the PNG paths."""
    import jax
    import numpy as np

    from cnnjax import viz

    if jax.process_index() != 0:
        return []
    c, state = local_view(c, state)
    written: list[Path] = []
    metrics_path = workdir / "metrics.jsonl"
    if metrics_path.exists() and metrics_path.stat().st_size > 0:
        records = viz.load_metrics(metrics_path)
        names = [m for m in ("loss", "accuracy", "mean_iou", "mean_dice", "learning_rate")
                 if m in viz.metric_names(records)]
        path = workdir / "training_curves.png"
        viz.plot_training_curves(records, names or None, logy=("loss",), path=path,
                                 title=f"{c.config.model} on {c.config.dataset}")
        written.append(path)
    kernel = first_conv_kernel(c.model, state, c.info.image_shape)
    if kernel is not None:
        k = np.asarray(jax.device_get(kernel))
        if k.ndim == 3:  # 1D conv (k, in, out): one row of width k per filter
            k = k[None]
        elif k.ndim == 5:  # 3D conv: the middle depth slice
            k = k[k.shape[0] // 2]
        path = workdir / "filters.png"
        viz.plot_filters(k, title="first-layer filters", path=path)
        written.append(path)
    if split:
        suffix = f"_{tag}" if tag else ""
        if c.info.task == "classification" and c.task.name == "classification":
            res = split_predictions(c, state, split)
            k = c.info.num_classes
            cm = np.zeros((k, k), np.int64)
            np.add.at(cm, (res["targets"].astype(int), res["predictions"].astype(int)), 1)
            path = workdir / f"confusion_matrix_{split}{suffix}.png"
            viz.plot_confusion_matrix(cm, c.info.class_names, title=f"{split} confusion matrix",
                                      path=path)
            written.append(path)
        elif c.info.task == "segmentation":
            res = split_predictions(c, state, split, max_batches=1)
            n = min(PLOT_EXAMPLES, len(res["images"]))
            images = _display(res["images"][:n], c)
            titles = [_iou_title(t, p, c.info.num_classes)
                      for t, p in zip(res["targets"][:n], res["predictions"][:n], strict=True)]
            path = workdir / f"segmentation_{split}{suffix}.png"
            viz.plot_segmentation(images, res["targets"][:n], res["predictions"][:n],
                                  num_classes=c.info.num_classes, row_titles=titles,
                                  class_names=c.info.class_names, path=path)
            written.append(path)
    return written


def _display(images: Any, c: Any) -> Any:
    """Undo the pipeline's normalisation for display (values 0..1)."""
    import numpy as np

    if not c.config.data.normalize:
        return np.clip(images, 0, 1)
    mean = np.asarray(c.info.mean, np.float32)
    std = np.asarray(c.info.std, np.float32)
    return np.clip(images * std + mean, 0, 1)


def _iou_title(target: Any, pred: Any, num_classes: int) -> str:
    import numpy as np

    ious = []
    for k in range(num_classes):
        union = np.logical_or(target == k, pred == k).sum()
        if union:
            ious.append(np.logical_and(target == k, pred == k).sum() / union)
    return f"mIoU {np.mean(ious):.3f}"


# --------------------------------------------------------------------------- predict


def load_inputs(path: Path, key: str | None) -> tuple[list[str], list[Any]]:
    """(names, images) from a folder of image files, a .npy or a .npz (one array per image)."""
    import numpy as np

    if not path.exists():
        raise FileNotFoundError(f"--input={path} does not exist")
    if path.is_dir():
        from PIL import Image

        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"--input={path} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        images = []
        for f in files:
            with Image.open(f) as im:
                images.append(np.asarray(im))
        return [f.name for f in files], images
    if path.suffix == ".npy":
        arr = np.load(path)
    elif path.suffix == ".npz":
        with np.load(path) as z:
            names = list(z.keys())
            if key is None:
                key = next((k for k in ("images", "test_images", "image") if k in names),
                           names[0] if names else None)
            if key not in names:
                raise ValueError(f"--input_key={key!r} is not in {path}; it holds {names}")
            arr = z[key]
    else:
        raise ValueError(f"--input={path}: expected a folder of images, a .npy or a .npz")
    return [str(i) for i in range(len(arr))], list(arr)


def _fit(image: Any, info: Any, resize: bool) -> Any:
    """One raw image -> (*spatial, C) with the data set's channels (and size when `resize`)."""
    import numpy as np
    from PIL import Image

    x = np.asarray(image)
    channels = info.image_shape[-1]
    spatial = len(info.image_shape) - 1
    if x.ndim == spatial:
        x = x[..., None]
    if x.ndim != spatial + 1:
        raise ValueError(f"an input image has shape {x.shape}; expected {info.image_shape}")
    if x.dtype != np.uint8:
        if np.issubdtype(x.dtype, np.floating):
            return x.astype(np.float32)  # taken as already preprocessed
        x = np.clip(x, 0, 255).astype(np.uint8)
    if x.shape[-1] != channels:
        if channels == 1 and x.shape[-1] in (3, 4):
            x = np.asarray(Image.fromarray(x[..., :3]).convert("L"))[..., None]
        elif channels == 3 and x.shape[-1] == 1:
            x = np.repeat(x, 3, axis=-1)
        elif channels == 3 and x.shape[-1] == 4:
            x = x[..., :3]
        else:
            raise ValueError(f"an input image has {x.shape[-1]} channels; expected {channels}")
    target = tuple(info.image_shape[:-1])
    if resize and spatial == 2 and None not in target and x.shape[:2] != target:
        img = Image.fromarray(x[..., 0] if channels == 1 else x)
        x = np.asarray(img.resize((target[1], target[0]), Image.BILINEAR))
        x = x[..., None] if channels == 1 else x
    return x


def write_predictions(c: Any, state: Any, inputs: Path, key: str | None, output: Path
                      ) -> list[Path]:
    """Class probabilities (predictions.csv + predictions.json) or masks (one PNG per image,
    pixel value = class id, plus overlays.png) for the images in `inputs`."""
    import jax
    import numpy as np
    from PIL import Image

    from cnnjax import viz
    from cnnjax.train.predict import predict, preprocess

    if jax.process_index() != 0:
        return []
    c, state = local_view(c, state)
    names, raw = load_inputs(inputs, key)
    seg = c.info.task == "segmentation"
    fitted = [_fit(x, c.info, resize=not seg) for x in raw]
    cfg = c.config

    def prep(x: Any) -> Any:
        if x.dtype == np.uint8:
            return preprocess(x[None], c.info.mean, c.info.std, normalize=cfg.data.normalize)
        return x[None]

    batch = cfg.eval_batch_size or cfg.batch_size
    output.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if not seg:
        x = np.concatenate([prep(x) for x in fitted])
        probs = predict(c.model, state, x, mesh=c.mesh, batch_size=batch,
                        precision=cfg.precision)
        classes = list(c.info.class_names)
        rows = []
        for name, p in zip(names, probs, strict=True):
            top = int(np.argmax(p))
            rows.append({"input": name, "prediction": top, "class_name": classes[top],
                         "probabilities": [float(v) for v in p]})
        csv_path = output / "predictions.csv"
        with csv_path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["input", "prediction", "class_name", *[f"p_{n}" for n in classes]])
            for r in rows:
                w.writerow([r["input"], r["prediction"], r["class_name"],
                            *[f"{v:.6g}" for v in r["probabilities"]]])
        json_path = output / "predictions.json"
        json_path.write_text(json.dumps({"class_names": classes, "predictions": rows},
                                        indent=1) + "\n")
        return [csv_path, json_path]
    masks = []
    for x in fitted:  # one at a time: images may differ in size
        masks.append(predict(c.model, state, prep(x), mesh=c.mesh, batch_size=batch,
                             precision=cfg.precision, output="labels")[0].astype(np.uint8))
    for name, m in zip(names, masks, strict=True):
        path = output / f"{Path(name).stem}_mask.png"
        Image.fromarray(m).save(path)
        written.append(path)
    n = min(PLOT_EXAMPLES, len(masks))
    if n and len({m.shape for m in masks[:n]}) == 1:
        shown = np.stack([_display(prep(x)[0], c) for x in fitted[:n]])
        path = output / "overlays.png"
        viz.plot_segmentation(shown, np.stack(masks[:n]), num_classes=c.info.num_classes,
                              class_names=c.info.class_names, row_titles=names[:n], path=path)
        written.append(path)
    return written


# --------------------------------------------------------------------------- main


def run(argv: Sequence[str], *, task: str, default_config: str) -> int:
    """Parse flags and run one mode; returns the process exit code (0 ok, 1 error, 2 usage)."""
    script = "classify" if task == "classification" else "segment"
    try:
        fv = parse(argv, CONFIG_DIR / default_config)
        init_distributed(fv)
        return _run_mode(fv, task, script)
    except UsageError as e:
        print(f"experiments.{script}: usage error: {e}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, FileNotFoundError, FloatingPointError) as e:
        print(f"experiments.{script}: error: {e}", file=sys.stderr)
        return 1


def _run_mode(fv: flags.FlagValues, task: str, script: str) -> int:
    import jax

    from cnnjax.checkpoint import to_json
    from cnnjax.train.config import validate_config
    from cnnjax.train.loop import evaluate, train_and_evaluate

    workdir = Path(fv.workdir)
    config = run_config(fv)
    validate_config(config)  # fail fast, before any data or device work
    check_task(config, task, script)
    if fv.mode == "train":
        summary = train_and_evaluate(config, workdir)
        if summary["status"] == "completed" and fv.plots:
            c, state, _ = restore(config, workdir, "latest")
            split = config.test_split or config.eval_split
            for p in write_plots(c, state, workdir, split):
                print(f"wrote {p}")
        return 0
    which = which_checkpoint(fv.checkpoint)
    if fv.mode == "eval":
        split = fv.split or config.test_split or config.eval_split
        if not split:
            raise UsageError("--split is needed: the config has no test_split nor eval_split")
        result = evaluate(config, workdir, split, which)
        if jax.process_index() == 0:
            path = workdir / f"eval_{split}_{result['which']}.json"
            path.write_text(json.dumps(to_json(result), indent=2) + "\n")
            print(json.dumps(to_json(result)))
            print(f"wrote {path}")
        if fv.plots:
            c, state, step = restore(config, workdir, which)
            for p in write_plots(c, state, workdir, split, tag=f"step{step}"):
                print(f"wrote {p}")
        return 0
    if not fv.input:
        raise UsageError("--mode=predict needs --input (a folder of images, a .npy or a .npz)")
    c, state, step = restore(config, workdir, which)
    output = Path(fv.output) if fv.output else workdir / "predictions"
    for p in write_predictions(c, state, Path(fv.input), fv.input_key, output):
        print(f"wrote {p}")
    print(f"predictions of checkpoint step {step} written to {output}")
    return 0
