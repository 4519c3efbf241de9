"""`--help` for the experiment scripts: the script's commands (its docstring), the main config
fields, and its flags (not the developer notes of `experiments.common`)."""

from __future__ import annotations

from collections.abc import Sequence

from absl import flags

HELP_ARGS = ("-h", "-help", "--help", "--helpfull", "--helpshort")

MAIN_FIELDS = """\
main config fields (--config.FIELD=VALUE; every field: README "Configs"):
  model, model_options          e.g. resnet18, --config.model_options.widths=(8,16,16)
  dataset, dataset_options, data_dir
                                shapes, mnist, image_folder (data_dir = your folder), tfds:NAME
  imports                       your own code (.py files or modules) registering names
  init_from, init_exclude       start from a .pth/.safetensors/.npz or another run's workdir
  batch_size, num_epochs, num_train_steps, seed
  optimizer.name, optimizer.learning_rate, optimizer.weight_decay, optimizer.lr_multipliers
  schedule.name, schedule.warmup_steps
  augment                       e.g. "random_crop(padding=4)|hflip"
  eval_split, test_split, eval_every_steps, checkpoint_every_steps, keep_best
eval, predict and export use the workdir's config.json; --config.FIELD=VALUE applies on top.
exit codes: 0 done, 1 failed run, 2 usage error, 128+signal preempted (run again to resume)."""


def wants_help(argv: Sequence[str]) -> bool:
    """True when the command line (``argv[0]`` is the program) asks for help."""
    return any(a in HELP_ARGS for a in argv[1:])


def help_text(prog: str, doc: str, fv: flags.FlagValues) -> str:
    """``usage: python -m PROG``, the script's docstring (its commands), the main config
    fields, then every flag with its help."""
    listing = fv.get_help(include_special_flags=False)
    return (f"usage: python -m {prog} [flags]\n\n{doc.strip()}\n\n{MAIN_FIELDS}\n\n"
            f"flags:\n{listing}\n")
