"""A cnnjax training run's checkpoint as an NNX module: `load_run(workdir)`.

A run's checkpoint holds the whole train state (Linen variables, optimizer, EMA); this picks
the variables of its "best", "latest" or given-step checkpoint, the EMA or the raw weights
(`cnnjax.train.ema.select_weights`), and writes them into `cnnjax.nnx.create(...)` of the
run's model, built from the run's `config.json` (no data set is opened).
"""

from __future__ import annotations

import os
from typing import Any

from flax import nnx

from cnnjax.nnx.convert import from_linen_variables
from cnnjax.nnx.zoo import ZooModel, create
from cnnjax.train.ema import resolve_weights, select_weights
from cnnjax.train.runner.components import build
from cnnjax.train.runner.evaluation import load_config, restore

__all__ = ["load_run"]


def load_run(workdir: str | os.PathLike, which: str | int = "best",
             weights: str | None = None, *, rngs: nnx.Rngs | int = 0) -> ZooModel:
    """The NNX module of `workdir`'s model with a checkpoint's weights, in eval mode.

    `which`: "best" (falls back to "latest" when nothing was ranked), "latest" or a step.
    `weights`: "ema" | "raw" | None (the EMA when the run has one; "ema" on a run without
    is a ValueError). The input shape is the run's image shape (`config.dataset_info`).
    """
    config = load_config(workdir)
    c = build(config, open_data=False)
    used = resolve_weights(weights, c.ema is not None)
    state, _, _ = restore(c, workdir, which)
    state = select_weights(state, used)
    model = create(config.model, input_shape=(1, *c.info.image_shape), rngs=rngs,
                   num_classes=c.info.num_classes, **dict(config.model_options))
    variables: dict[str, Any] = {"params": state.params, **state.model_state}
    from_linen_variables(model, variables)
    model.eval()
    return model
