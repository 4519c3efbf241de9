"""Builds the notebooks from their plain-Python sources and stores their outputs.

The source of each notebook is `notebooks/src/<name>.py`, cells separated by ``# %%``
(code) and ``# %% [markdown]`` (markdown, every line a ``# ``-comment). This script turns a
source into `notebooks/<name>.ipynb`, executes it top to bottom in a fresh kernel from this
Python's environment (the repository root on PYTHONPATH, the notebook folder as working
directory) and writes it with its outputs, so plots show on a code host.

    python notebooks/build_notebooks.py                  # all notebooks, full configuration
    python notebooks/build_notebooks.py 02_classification --fast
    python notebooks/build_notebooks.py --no-execute     # only regenerate the cells

`--fast` sets CNNJAX_NOTEBOOK_FAST=1 (what CI runs, see tests/notebooks). The committed
notebooks are executed in the full configuration.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parent
SOURCE_DIR = NOTEBOOK_DIR / "src"
REPO_ROOT = NOTEBOOK_DIR.parent
FAST_ENV = "CNNJAX_NOTEBOOK_FAST"
_CODE, _MARKDOWN = "# %%", "# %% [markdown]"


def parse_source(text: str) -> list[tuple[str, str]]:
    """``[(cell_type, source), ...]`` from percent-format text (blank edges trimmed)."""
    cells: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        stripped = line.rstrip()
        if stripped == _MARKDOWN:
            cells.append(("markdown", []))
        elif stripped == _CODE:
            cells.append(("code", []))
        elif not cells:
            if stripped:
                raise ValueError(f"text before the first cell marker: {line!r}")
        elif cells[-1][0] == "markdown":
            if stripped and not stripped.startswith("#"):
                raise ValueError(f"markdown cell line must start with '#': {line!r}")
            cells[-1][1].append(stripped[2:] if stripped.startswith("# ") else stripped[1:])
        else:
            cells[-1][1].append(line)
    out = []
    for kind, lines in cells:
        while lines and not lines[0].strip():
            lines.pop(0)
        while lines and not lines[-1].strip():
            lines.pop()
        out.append((kind, "\n".join(lines)))
    return out


def build(name: str) -> nbformat.NotebookNode:
    """The unexecuted notebook of `src/<name>.py`."""
    cells = parse_source((SOURCE_DIR / f"{name}.py").read_text())
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell(src) if kind == "markdown" else nbformat.v4.new_code_cell(src)
        for kind, src in cells
    ]
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{name[:2]}-{i:03d}"  # stable ids: no spurious diffs between builds
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    return nb


def kernel_env(fast: bool) -> dict[str, str]:
    """The kernel's environment: this one, the repo importable, the fast flag as asked, and
    one CPU device (the test suite's 8 virtual devices are not what a reader has)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env[FAST_ENV] = "1" if fast else "0"
    flags = env.get("XLA_FLAGS", "").split()
    env["XLA_FLAGS"] = " ".join(f for f in flags if "force_host_platform_device_count" not in f)
    env.setdefault("JAX_PLATFORMS", "cpu")
    return env


def execute(nb: nbformat.NotebookNode, *, fast: bool, timeout: int = 1800) -> None:
    """Runs every cell in a fresh python3 kernel; raises CellExecutionError on a failing cell."""
    saved, env = dict(os.environ), kernel_env(fast)
    os.environ.clear()
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        client = NotebookClient(
            nb,
            timeout=timeout,
            kernel_name="python3",
            record_timing=False,
            resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
        )
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def names() -> list[str]:
    return sorted(p.stem for p in SOURCE_DIR.glob("[0-9]*.py"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"notebooks to build (default: {names()})")
    parser.add_argument("--fast", action="store_true", help=f"execute with {FAST_ENV}=1")
    parser.add_argument("--no-execute", action="store_true", help="write cells without outputs")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args(argv)
    for name in args.names or names():
        name = Path(name).stem
        nb = build(name)
        if not args.no_execute:
            start = time.perf_counter()
            execute(nb, fast=args.fast, timeout=args.timeout)
            print(f"{name}: executed in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        path = NOTEBOOK_DIR / f"{name}.ipynb"
        nbformat.write(nb, path)
        print(f"{name}: wrote {path} ({path.stat().st_size / 1e3:.0f} kB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
