"""`--mode=export` of the experiment scripts, and a standalone entry point for it.

    python -m experiments.export_mode --workdir=runs/mnist [--checkpoint=best]
        [--format=stablehlo,onnx,torch] [--output=DIR] [--weights=ema|raw]

`run_export(workdir, checkpoint, formats, output)` is what `experiments.classify` and
`experiments.segment` call for `--mode=export --format=... --output=...`: it prints the files
written and returns the exit code (0 ok, 2 bad --checkpoint/--format/--weights, 1 failed
export), with a
one-line message and no traceback for a user's mistake.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import ml_collections

from cnnjax.checkpoint import CorruptCheckpointError, StructureMismatchError
from cnnjax.export import (
    ExportError,
    available_formats,
    export_from_flags,
    parse_checkpoint,
    parse_formats,
)
from cnnjax.train.ema import config_ema, resolve_weights
from cnnjax.train.runner.evaluation import load_config

__all__ = ["main", "run_export"]

FORMAT_HELP = (f"comma-separated export formats from {available_formats()}; 'auto' (default): "
               "every format that applies to the model and whose packages are installed")


def run_export(workdir: str, checkpoint: str = "best", formats: str = "auto",
               output: str | None = None, *, prog: str = "experiments.export_mode",
               config: ml_collections.ConfigDict | None = None,
               weights: str | None = None) -> int:
    """Export `workdir`'s checkpoint; returns the process exit code (see the module doc).

    `config`: a prepared config to use instead of the workdir's `config.json`. `weights`:
    "ema", "raw" or None (the EMA when the run has one); "ema" on a run without EMA is a
    usage error (2).
    """
    try:
        parse_checkpoint(checkpoint)
        if formats != "auto":
            parse_formats(formats)
        if not workdir:
            raise ValueError("--workdir is needed")
        resolve_weights(weights, True)  # the value; whether the run has an EMA: below
    except (ValueError, TypeError) as e:
        print(f"{prog}: usage error: {e}", file=sys.stderr)
        return 2
    try:
        if weights == "ema":
            config = load_config(workdir) if config is None else config
    except (OSError, ValueError, TypeError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    try:
        if config is not None:
            resolve_weights(weights, config_ema(config) is not None)
    except ValueError as e:
        print(f"{prog}: usage error: {e}", file=sys.stderr)
        return 2
    try:
        paths = export_from_flags(workdir, checkpoint, formats, output, config, weights)
    except (ExportError, OSError, ValueError, TypeError,
            CorruptCheckpointError, StructureMismatchError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; --output was left as it was (an export is written "
              "aside and renamed into place only when complete)", file=sys.stderr)
        return 130
    for fmt, path in paths.items():
        print(f"wrote {fmt}: {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `--workdir --checkpoint --format --output` (argv[0] is the program name)."""
    argv = sys.argv if argv is None else argv
    parser = argparse.ArgumentParser(prog="experiments.export_mode", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True, help="the training run's workdir")
    parser.add_argument("--checkpoint", default="best", help="best, latest or a step number")
    parser.add_argument("--format", default="auto", dest="formats", help=FORMAT_HELP)
    parser.add_argument("--output", default=None,
                        help="output folder (default: WORKDIR/export/step_<step>)")
    parser.add_argument("--weights", default=None,
                        help="ema or raw (default: ema when the run has an EMA of its "
                        "weights, config.ema_decay > 0, else raw)")
    try:
        args = parser.parse_args(list(argv[1:]))
    except SystemExit as e:  # argparse prints the usage message itself
        return int(e.code or 0)
    return run_export(args.workdir, args.checkpoint, args.formats, args.output,
                      weights=args.weights)


if __name__ == "__main__":
    sys.exit(main())
