"""`export_run`: export a training run's checkpoint, with everything needed to use it.

    export_run("runs/mnist", checkpoint="best", formats="stablehlo,onnx")
    # -> runs/mnist/export/step_<n>/{model.stablehlo, model.onnx, export.json}

The run is rebuilt from its own `config.json` (`train.runner.evaluation.load_config`, or a config
given by the caller, e.g. with command-line overrides) WITHOUT opening its data set
(`train.runner.components.build(config, open_data=False)`: classes, image shape and normalisation
come from `config.dataset_info`), so a copy of the workdir exports on a machine that lacks
the training data. Its checkpoint is restored read-only; the input shape is what the
evaluation pipeline feeds the model: the saved image shape after the deterministic
(eval-mode) augmentation ops of the config (resize, center crop).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from cnnjax import models
from cnnjax.checkpoint import Restored
from cnnjax.data import augment as augment_lib
from cnnjax.data.transforms import apply_ops
from cnnjax.export.core import export_model, parse_formats
from cnnjax.train.ema import resolve_weights, select_weights
from cnnjax.train.runner.components import Components, build
from cnnjax.train.runner.evaluation import CHECKPOINT_DIR, checkpoints, load_config
from cnnjax.workdir_layout import EXPORT_DIR

__all__ = ["default_formats", "export_from_flags", "export_run", "parse_checkpoint"]

_TORCHVISION_FAMILIES = (models.ResNet, models.VGG, models.AlexNet)


def parse_checkpoint(checkpoint: str | int) -> str | int:
    """"best" | "latest" | a step (int, or its decimal string) -> checked value."""
    if checkpoint in ("best", "latest"):
        return checkpoint
    if isinstance(checkpoint, str) and checkpoint.strip().isdigit():
        return int(checkpoint)
    if isinstance(checkpoint, int | np.integer) and not isinstance(checkpoint, bool):
        if checkpoint >= 0:
            return int(checkpoint)
    raise ValueError(f"checkpoint={checkpoint!r}: expected 'best', 'latest' or a step >= 0")


def default_formats(model: Any) -> tuple[str, ...]:
    """Every format that applies: StableHLO always; ONNX when jax2onnx is installed; torch for
    the torchvision families when `cnnjax.models.to_torchvision` and PyTorch exist."""
    out = ["stablehlo"]
    if _importable("jax2onnx"):
        out.append("onnx")
    if (isinstance(model, _TORCHVISION_FAMILIES) and hasattr(models, "to_torchvision")
            and _importable("torch")):
        out.append("torch")
    return tuple(out)


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def restore_run(workdir: str | os.PathLike, checkpoint: str | int,
                config: ml_collections.ConfigDict | None = None) -> tuple[Components, Restored]:
    """(built run, restored checkpoint) of `workdir`; FileNotFoundError when either is missing.

    `config`: a prepared config to use instead of the workdir's `config.json`. No data set is
    opened. "best" falls back to "latest" when the run never validated (as `evaluate` does).
    """
    workdir = Path(workdir)
    if not workdir.is_dir():
        raise FileNotFoundError(f"workdir {str(workdir)!r} does not exist (or is not a folder)")
    c = build(load_config(workdir) if config is None else config, open_data=False)
    directory = workdir / CHECKPOINT_DIR
    if not directory.is_dir():
        raise FileNotFoundError(f"no checkpoints in {directory}: train first")
    with checkpoints(c, workdir, read_only=True) as ckpt:
        which = checkpoint
        if which == "best" and ckpt.best_step() is None:
            which = "latest"  # no validation ran
        restored = ckpt.restore(c.init_state(), which)
    if restored is None:
        raise FileNotFoundError(f"no checkpoint {checkpoint!r} in {directory}: train first")
    return c, restored


def eval_input_shape(c: Components) -> tuple[int, ...]:
    """One example's shape as the evaluation pipeline gives it: the eval-mode ops applied to
    a blank record of the data set's image shape (no data is read)."""
    shape = tuple(c.info.image_shape)
    if None in shape:
        if c.train_source is None:
            raise ValueError(
                f"data set {c.info.name!r} has variable image sizes {shape}: the export input "
                "shape is unknown; give the run a fixed size (augment='resize(...)')")
        record = dict(c.train_source[0])
    else:
        record = {"image": np.zeros(shape, np.uint8)}
        if c.info.task == "segmentation":
            record["mask"] = np.zeros(shape[:-1], np.uint8)
        else:
            record["label"] = np.int64(0)
    ops, _ = augment_lib.build_ops(c.config.augment or None, c.info)
    record = apply_ops(ops, record, np.random.default_rng(0), train=False)
    return tuple(int(d) for d in np.shape(record["image"]))


def run_metadata(c: Components, restored: Restored, workdir: Path,
                 checkpoint: str | int) -> dict[str, Any]:
    """export.json's run-specific part: model options, preprocessing, classes, checkpoint."""
    cfg, info = c.config, c.info
    normalize = bool(cfg.data.normalize)
    channels = len(info.mean)
    return {
        "model": {"create": {"name": cfg.model, "num_classes": info.num_classes,
                             **dict(cfg.model_options)}},
        "preprocessing": {
            "input": "uint8 image 0..255, channels last",
            "formula": "(x / 255 - mean) / std, per channel, float32",
            "mean": list(info.mean) if normalize else [0.0] * channels,
            "std": list(info.std) if normalize else [1.0] * channels,
            "augment_spec": cfg.augment or None,
            "note": "before normalising, apply the eval-mode ops of augment_spec (resize, "
                    "center_crop), as cnnjax.data.make_pipeline(train=False) does",
        },
        "task": c.task.name,
        "dataset": info.name,
        "num_classes": info.num_classes,
        "class_names": list(info.class_names),
        "checkpoint": {"workdir": str(workdir.absolute()), "requested": checkpoint,
                       "step": int(restored.step), "metrics": restored.metrics},
        "run": restored.meta.get("run", {}),
        "config": cfg.to_dict(),
    }


def export_run(
    workdir: str | os.PathLike,
    *,
    checkpoint: str | int = "best",
    formats: str | Sequence[str] = "auto",
    output_dir: str | os.PathLike | None = None,
    onnx_batch_size: int = 1,
    config: ml_collections.ConfigDict | None = None,
    weights: str | None = None,
) -> dict[str, Path]:
    """Export `workdir`'s checkpoint ("best", "latest" or a step) in `formats`.

    `weights`: "ema" or "raw" (`cnnjax.train.ema.select_weights`); None: the EMA of the
    weights when the run has one. export.json names the weights exported.

    `formats="auto"`: `default_formats(model)`. `output_dir` defaults to
    `workdir/export/step_<step>`. `config`: a prepared config instead of the workdir's
    `config.json` (the scripts pass it with their --config.FIELD overrides). Returns
    `{format: main file, "export.json": path}`.
    Raises ValueError for a bad format or checkpoint (before any work), FileNotFoundError for
    a missing workdir, config or checkpoint, ExportError when a format cannot be written.
    """
    checkpoint = parse_checkpoint(checkpoint)
    if formats != "auto":
        formats = parse_formats(formats)
    workdir = Path(workdir)
    c, restored = restore_run(workdir, checkpoint, config)
    if formats == "auto":
        formats = default_formats(c.model)
    used = resolve_weights(weights, restored.state.ema is not None)
    state = select_weights(restored.state, used)
    variables = {"params": state.params, **dict(state.model_state or {})}
    variables = jax.device_get(variables)
    out = Path(output_dir) if output_dir is not None else (
        workdir / EXPORT_DIR / f"step_{int(restored.step)}")
    return export_model(
        c.model, variables, input_shape=eval_input_shape(c), output_dir=out, formats=formats,
        metadata={**run_metadata(c, restored, workdir, checkpoint), "weights": used},
        name=c.config.model,
        onnx_batch_size=onnx_batch_size,
    )


def export_from_flags(workdir: str, checkpoint: str = "best", formats: str = "auto",
                      output: str | None = None,
                      config: ml_collections.ConfigDict | None = None,
                      weights: str | None = None) -> dict[str, Path]:
    """The `--mode=export` of the experiment scripts: flag strings in, files out.

    Bad `--checkpoint`/`--format` values raise ValueError before anything is loaded (the
    scripts turn it into a usage error, exit code 2); see `export_run` for the rest.
    """
    if not workdir:
        raise ValueError("--workdir is needed for --mode=export")
    return export_run(workdir, checkpoint=checkpoint, formats=formats or "auto",
                      output_dir=output or None, config=config, weights=weights)

