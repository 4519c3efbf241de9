r"""What `experiments.classify` and `experiments.segment` share: flags, modes, plots, prediction.

Both entry points are `main(argv) -> exit code` over `run(argv, task=...)`:

    python -m experiments.classify --workdir=runs/shapes                       # train (resumes)
    python -m experiments.classify --workdir=runs/mnist --config=experiments/configs/mnist.py \
        --config.optimizer.learning_rate=0.01
    python -m experiments.classify --workdir=runs/mnist --mode=eval --checkpoint=best --split=test
    python -m experiments.classify --workdir=runs/mnist --mode=predict --input=digits/ \
        --output=preds                                      # folder of images, .npy or .npz
    python -m experiments.classify --workdir=runs/mnist --mode=export --format=onnx

Exit codes: 0 done, 1 failed run, 2 usage error, 128 + signal for a preempted training run
(143 SIGTERM, 130 SIGINT; the same command resumes). Errors print one line, no traceback.

Multi-host: every process runs the same command with `--coordinator_address=HOST:PORT
--num_processes=N --process_id=I` (or `--distributed` to let `jax.distributed.initialize`
read them from the cluster environment: SLURM, Cloud TPU, or JAX_COORDINATOR_ADDRESS /
JAX_NUM_PROCESSES / JAX_PROCESS_ID); it is called before anything touches a device.

Flags are parsed into a fresh `absl.flags.FlagValues` per call, so `main(argv)` can be called
many times in one process (tests) and both scripts can be imported together.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import flax.errors
import jax
from absl import flags
from ml_collections import config_flags

from cnnjax import workdir_layout as layout
from cnnjax.checkpoint import to_json
from cnnjax.export import parse_checkpoint, parse_formats
from cnnjax.train.ema import WEIGHTS, select_weights
from cnnjax.train.runner.components import Components, build
from cnnjax.train.runner.evaluation import evaluate_checkpoint, restore
from cnnjax.train.runner.loop import train
from cnnjax.train.runner.predict_io import write_predictions
from cnnjax.viz.run_plots import write_overlays, write_plots
from experiments.cli_errors import (
    RUN_ERRORS,
    UsageError,
    check_config_path,
    last_line,
    remove_if_empty,
)
from experiments.cli_help import help_text, wants_help
from experiments.export_mode import FORMAT_HELP, run_export
from experiments.run_config import check_task, run_config, which_weights

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
MODES = ("train", "eval", "predict", "export")

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"


# --------------------------------------------------------------------------- flags


def define_flags(fv: flags.FlagValues, default_config: Path, argv: Sequence[str]) -> None:
    """Register the flags of both entry points on `fv` (`argv` lets ml_collections see
    `--config.field=value` overrides)."""
    define_config_flag(fv, default_config, argv)
    flags.DEFINE_string("workdir", None, "run directory: config, metrics, plots, checkpoints; "
                        "an existing one is resumed", flag_values=fv)
    flags.DEFINE_enum("mode", "train", list(MODES), "train (resumes), eval, predict or export",
                      flag_values=fv)
    flags.DEFINE_string("format", "auto", f"export: {FORMAT_HELP}", flag_values=fv)
    flags.DEFINE_string("checkpoint", "best", "eval/predict: best | latest | a step number",
                        flag_values=fv)
    flags.DEFINE_string("split", None, "eval: split to evaluate (default: the config's "
                        "test_split, else eval_split)", flag_values=fv)
    flags.DEFINE_string("input", None, "predict: a folder of images, a .npy or a .npz",
                        flag_values=fv)
    flags.DEFINE_string("input_key", None, "predict: the .npz array (default: 'images', "
                        "'test_images', else the first)", flag_values=fv)
    flags.DEFINE_string("output", None, "predict: output folder (default WORKDIR/predictions); "
                        "export: (default WORKDIR/export/step_<step>)", flag_values=fv)
    flags.DEFINE_enum("weights", None, list(WEIGHTS), "eval/predict/export: the EMA of the "
                      "weights or the raw weights (default: ema when the run has an EMA, "
                      "config.ema_decay > 0, else raw)", flag_values=fv)
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


def define_config_flag(fv: flags.FlagValues, default_config: Path, argv: Sequence[str]) -> None:
    """`--config=FILE.py[:ARG]` and its `--config.FIELD=VALUE` overrides on `fv`: the one way
    the entry points and `experiments.sweep` load a config file."""
    # ml_collections loads every config file as the module "config_config" with the
    # deprecated load_module(), which re-executes into a cached module of that name: a file
    # without get_config() would silently inherit the previous file's (in-process reruns).
    sys.modules.pop("config_config", None)
    config_flags.DEFINE_config_file(
        "config", str(default_config), "config file (a get_config() .py); --config.FIELD=VALUE "
        "overrides any field", flag_values=fv, sys_argv=list(argv),
        # New fields are accepted here so that --config.model_options.X adds a model option;
        # a typo elsewhere is still caught by resolve_config (unknown field -> ValueError).
        accept_new_attributes=True, lock_config=False,
    )


def _parse_config(fv: flags.FlagValues, argv: Sequence[str]) -> None:
    """Parse `argv` into `fv` and load the config file now: its errors become UsageErrors."""
    try:
        fv(list(argv))
        fv.config  # noqa: B018 (loads the file now: its errors are usage errors)
    except SyntaxError as e:
        raise UsageError(f"config file {e.filename}, line {e.lineno}: syntax error: {e.msg}"
                         ) from e
    except flags.Error as e:
        raise UsageError(last_line(str(e))) from e
    except (AttributeError, KeyError) as e:  # --config.FIELD naming no field of the config
        if "get_config" in str(e):
            raise UsageError(f"the config file defines no get_config(): {e}") from e
        raise UsageError(f"unknown config field in an override: {e}") from e


def load_config_arg(config_arg: str, overrides: Sequence[str]) -> Any:
    """The ConfigDict of `--config=config_arg` with `--config.FIELD=VALUE` `overrides`, parsed
    exactly as `parse` parses an entry point's command line (not yet resolved/validated)."""
    argv = ["config", f"--config={config_arg}", *overrides]
    path = Path(config_arg.split(":", 1)[0])
    check_config_path(argv, path)
    fv = flags.FlagValues()
    try:
        define_config_flag(fv, path, argv)
    except SyntaxError as e:
        raise UsageError(f"config file {e.filename}, line {e.lineno}: syntax error: {e.msg}"
                         ) from e
    _parse_config(fv, argv)
    return fv.config


def parse(argv: Sequence[str], default_config: Path) -> flags.FlagValues:
    """Parse `argv` (argv[0] is the program name) into a fresh FlagValues."""
    fv = flags.FlagValues()
    check_config_path(argv, default_config)
    try:
        define_flags(fv, default_config, argv)  # loads the config file and its overrides
    except SyntaxError as e:
        raise UsageError(f"config file {e.filename}, line {e.lineno}: syntax error: {e.msg}"
                         ) from e
    _parse_config(fv, argv)
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


# --------------------------------------------------------------------------- main


def _quiet_closed_loop_callbacks() -> None:
    """After a failed asynchronous checkpoint (a full disk), TensorStore completes its pending
    writes into an asyncio loop Orbax has closed, and each one reports "Event loop is closed"
    with a traceback (dozens) through `sys.unraisablehook`, burying the run's one-line error.
    Drop exactly those; every other unraisable exception is reported as before."""
    if getattr(sys.unraisablehook, "_cnnjax_quiet", False):
        return
    previous = sys.unraisablehook

    def hook(unraisable):
        value = unraisable.exc_value
        if isinstance(value, RuntimeError) and str(value) == "Event loop is closed":
            return
        previous(unraisable)

    hook._cnnjax_quiet = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


def main(argv: Sequence[str] | None = None, *, task: str, default_config: str) -> int:
    """Parse flags (`argv[0]` is the program name; default `sys.argv`) and run one mode;
    returns the process exit code: 0 ok, 1 failed run, 2 usage error, `128 + signal` for a
    preempted training run (143 SIGTERM, 130 SIGINT: run the command again to resume)."""
    argv = sys.argv if argv is None else argv
    script = "classify" if task == "classification" else "segment"
    if wants_help(argv):
        fv = flags.FlagValues()
        define_flags(fv, CONFIG_DIR / default_config, argv[:1])
        doc = importlib.import_module(f"experiments.{script}").__doc__ or ""
        print(help_text(f"experiments.{script}", doc, fv))
        return 0
    _quiet_closed_loop_callbacks()
    workdir = created = None
    try:
        fv = parse(argv, CONFIG_DIR / default_config)
        workdir = Path(fv.workdir)
        created = not workdir.exists()
        if fv.mode == "export":
            return _export(fv, argv, script)
        init_distributed(fv)
        code = _run_mode(fv, argv, task, script)
    except UsageError as e:
        print(f"experiments.{script}: usage error: {e}", file=sys.stderr)
        code = 2
    except RUN_ERRORS as e:
        print(f"experiments.{script}: error: {e}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print(f"experiments.{script}: interrupted", file=sys.stderr)
        code = 128 + signal.SIGINT
    except BaseException:  # a bug (a traceback follows): still take back an empty workdir
        if created:
            remove_if_empty(workdir)
        raise
    if code != 0 and created:
        remove_if_empty(workdir)
    return code


def _print_written(paths: Sequence[Path]) -> None:
    for p in paths:
        print(f"wrote {p}")


def _plot_final(c: Components, workdir: Path, split: str | None, state: Any) -> None:
    """The plots of a completed training run, from its final state in memory (its EMA
    weights when it has them, as its validation)."""
    _print_written(write_plots(c, select_weights(state), workdir, split))


def _export(fv: flags.FlagValues, argv: Sequence[str], script: str) -> int:
    """--mode=export: the run's config.json (+ overrides), no data set opened."""
    try:  # usage errors first, before the workdir is read
        parse_checkpoint(fv.checkpoint)
        if fv.format != "auto":
            parse_formats(fv.format)
    except ValueError as e:
        raise UsageError(str(e)) from e
    prog = f"experiments.{script}"
    config = None
    if (Path(fv.workdir) / layout.CONFIG_FILE).exists():
        config = run_config(fv, argv, prog)
    return run_export(fv.workdir, fv.checkpoint, fv.format, fv.output, prog=prog,
                      config=config, weights=fv.weights)


def _run_mode(fv: flags.FlagValues, argv: Sequence[str], task: str, script: str) -> int:
    workdir = Path(fv.workdir)
    if fv.mode == "predict" and not fv.input:  # a usage error before the workdir is read
        raise UsageError("--mode=predict needs --input (a folder of images, a .npy or a .npz)")
    config = run_config(fv, argv, f"experiments.{script}")  # before any data or device work
    check_task(config, task, script)
    split = fv.split or config.test_split or config.eval_split
    if fv.mode == "eval" and not split:
        raise UsageError("--split is needed: the config has no test_split nor eval_split")
    which = "latest" if fv.mode == "train" else which_checkpoint(fv.checkpoint)
    weights = which_weights(fv, config)
    # train opens (and checks) its data; eval opens only its split, predict none at all
    c = build(config, open_data=fv.mode == "train")
    if fv.mode == "train":
        plot_split = config.test_split or config.eval_split
        summary = train(c, workdir, on_completed=functools.partial(
            _plot_final, c, workdir, plot_split) if fv.plots else None)
        if summary["status"] == "preempted":
            return 128 + int(summary.get("signal") or signal.SIGTERM)
        return 0
    try:
        if fv.mode == "eval":
            return _evaluate(c, fv, workdir, split, which, weights)
        state, step, _ = restore(c, workdir, which)
        state = select_weights(state, weights)
        output = Path(fv.output) if fv.output else workdir / layout.PREDICTIONS_DIR
        _print_written(write_predictions(c, state, Path(fv.input), fv.input_key, output,
                                         overlays=write_overlays))
    except flax.errors.ScopeParamShapeError as e:
        raise ValueError(
            f"the checkpoint's variables were built for inputs of shape {c.info.image_shape} "
            f"(*spatial, channels) and do not fit these inputs: {last_line(str(e))}") from e
    print(f"predictions of checkpoint step {step} written to {output}")
    return 0


def _evaluate(c: Components, fv: flags.FlagValues, workdir: Path, split: str,
              which: str | int, weights: str) -> int:
    """Evaluate, print the metrics, then write them (a read-only workdir: exit 1 after the
    metrics were printed). A run with an EMA names the weights in the file name."""
    result, state = evaluate_checkpoint(c, workdir, split, which, weights)
    if jax.process_index() == 0:
        print(json.dumps(to_json(result)))
        path = workdir / layout.eval_file(split, result["which"],
                                          weights if c.ema is not None else "")
        try:
            path.write_text(json.dumps(to_json(result), indent=2) + "\n")
        except OSError as e:
            print(f"could not write {path} ({e.strerror or e}); the metrics are printed above",
                  file=sys.stderr)
            return 1
        print(f"wrote {path}")
    if fv.plots:
        _print_written(write_plots(c, state, workdir, split, tag=f"step{result['step']}"))
    return 0
