"""`--help` for the experiment scripts: the script's commands (its docstring) and its flags."""

from __future__ import annotations

from collections.abc import Sequence

from absl import flags

HELP_ARGS = ("-h", "-help", "--help", "--helpfull", "--helpshort")


def wants_help(argv: Sequence[str]) -> bool:
    """True when the command line (``argv[0]`` is the program) asks for help."""
    return any(a in HELP_ARGS for a in argv[1:])


def help_text(prog: str, doc: str, fv: flags.FlagValues) -> str:
    """``usage: python -m PROG``, the module docstring, then every flag with its help."""
    listing = fv.get_help(include_special_flags=False)
    return f"usage: python -m {prog} [flags]\n\n{doc.strip()}\n\nflags:\n{listing}\n"
