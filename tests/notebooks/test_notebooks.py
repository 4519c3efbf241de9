"""Every notebook in notebooks/ runs top to bottom in its fast configuration
(CNNJAX_NOTEBOOK_FAST=1), its committed copy carries its plots, and its cells are the ones
its source in notebooks/src/ generates (edit the source, then rebuild)."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9]*.ipynb"))
FAST_SECONDS = 300  # one notebook in CI, start-up included (about 20-40 s on 2 idle cores)


def _builder():
    path = NOTEBOOK_DIR / "build_notebooks.py"
    spec = importlib.util.spec_from_file_location("build_notebooks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_source_has_its_notebook():
    sources = sorted(p.stem for p in (NOTEBOOK_DIR / "src").glob("[0-9]*.py"))
    assert sources, "no notebook sources in notebooks/src"
    assert sources == [p.stem for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_matches_source_and_shows_plots(path):
    committed = nbformat.read(path, as_version=4)
    built = _builder().build(path.stem)
    assert [(c.cell_type, c.source) for c in committed.cells] == [
        (c.cell_type, c.source) for c in built.cells
    ], f"{path.name} is stale: run python notebooks/build_notebooks.py {path.stem}"
    code = [c for c in committed.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), f"{path.name} is not executed"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name} was committed with an error output"
    images = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3, f"{path.name} shows {len(images)} plots"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_fast_mode(path):
    builder = _builder()
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    builder.execute(nb, fast=True, timeout=FAST_SECONDS)  # raises on the first failing cell
    elapsed = time.perf_counter() - start
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if "image/png" in o.get("data", {})]
    assert images, f"{path.name} produced no plot in fast mode"
    assert elapsed < FAST_SECONDS, f"{path.name} took {elapsed:.0f} s in fast mode"
