"""Shared helpers of the export tests (imported by name, as tests/loop/loop_helpers.py is)."""

import jax
import jax.numpy as jnp
import numpy as np

import cnnjax.models as models


def make_model(name, options, shape, seed=0):
    """A zoo model with 3 classes and non-trivial running statistics (means ~ +-0.2, variances
    in 0.5..1.5), so eval mode (running averages, not batch statistics) is really exercised."""
    model = models.create(name, num_classes=3, **options)
    variables = model.init(jax.random.key(seed), jnp.zeros((1, *shape)), train=False)
    if "batch_stats" in variables:
        rng = np.random.default_rng(seed + 1)

        def perturb(path, leaf):
            if jax.tree_util.keystr(path).endswith("['var']"):
                return leaf * rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
            return leaf + rng.uniform(-0.2, 0.2, leaf.shape).astype(np.float32)

        stats = jax.tree_util.tree_map_with_path(perturb, variables["batch_stats"])
        variables = {**variables, "batch_stats": stats}
    return model, variables
