"""Train state creation, the mesh and the batch/state layouts on 8 CPU devices."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from train_testutil import max_abs_diff

from cnnjax import train


class TinyBN(nn.Module):
    """Conv -> BatchNorm -> Dropout -> Dense: every kind of variable a state must carry."""

    dtype: object = jnp.float32
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        x = nn.Conv(4, (3, 3), dtype=self.dtype)(x)
        x = nn.BatchNorm(use_running_average=not train, axis_name=self.axis_name)(x)
        x = nn.Dropout(0.5, deterministic=not train)(nn.relu(x))
        return nn.Dense(3, dtype=self.dtype)(x.mean(axis=(1, 2)))


@pytest.fixture(scope="module")
def mesh():
    return train.make_mesh()


@pytest.fixture(scope="module")
def tx():
    return train.make_optimizer({"name": "adamw", "learning_rate": 1e-3, "weight_decay": 0.1})


def test_state_is_arrays_only_replicated_and_shaped_like_model_init(mesh, tx):
    model = TinyBN()
    state = train.create_train_state(model, tx, 0, (2, 6, 6, 3), mesh=mesh)
    leaves = jax.tree.leaves(state)
    assert all(isinstance(x, jax.Array) for x in leaves)
    rep = train.replicated_sharding(mesh)
    assert all(x.sharding.is_equivalent_to(rep, x.ndim) for x in leaves)
    assert state.step.dtype == jnp.int32 and int(state.step) == 0
    assert state.rng.dtype == jnp.uint32 and state.rng.shape == (2,)
    ref = model.init(jax.random.key(1), jnp.zeros((2, 6, 6, 3)))
    shapes = lambda t: jax.tree.map(lambda x: (x.shape, x.dtype), t)  # noqa: E731
    assert shapes(state.params) == shapes(ref["params"])
    assert shapes(state.model_state) == shapes({"batch_stats": ref["batch_stats"]})
    assert train.param_count(state.params) == 3 * 3 * 3 * 4 + 4 + 4 + 4 + 4 * 3 + 3


def test_state_is_deterministic_in_the_seed_and_accepts_keys_and_samples(mesh, tx):
    model = TinyBN()
    a = train.create_train_state(model, tx, 7, (1, 6, 6, 3), mesh=mesh)
    b = train.create_train_state(model, tx, jax.random.key(7), np.zeros((1, 6, 6, 3)), mesh=mesh)
    c = train.create_train_state(model, tx, 8, (1, 6, 6, 3), mesh=mesh)
    assert max_abs_diff(jax.device_get(a), jax.device_get(b)) == 0.0
    assert max_abs_diff(jax.device_get(a.params), jax.device_get(c.params)) > 0.0


def test_create_train_state_rejects_bad_arguments(mesh, tx):
    with pytest.raises(TypeError, match="rng"):
        train.create_train_state(TinyBN(), tx, "seed", (1, 6, 6, 3), mesh=mesh)
    with pytest.raises(ValueError, match="input shape"):
        train.create_train_state(TinyBN(), tx, 0, (1, 0, 6, 3), mesh=mesh)
    with pytest.raises(TypeError, match="tx"):
        train.create_train_state(TinyBN(), "adam", 0, (1, 6, 6, 3), mesh=mesh)
    with pytest.raises(TypeError, match="mesh"):
        train.create_train_state(TinyBN(), tx, 0, (1, 6, 6, 3), mesh="data")


def test_make_mesh_sizes_and_errors():
    assert train.make_mesh().shape == {"data": 8}
    assert train.make_mesh(2).devices.tolist() == jax.devices()[:2]
    with pytest.raises(ValueError, match="num_devices"):
        train.make_mesh(9)
    with pytest.raises(ValueError, match="num_devices"):
        train.make_mesh(0)


def test_shard_batch_splits_rows_over_devices_and_passes_global_arrays(mesh):
    batch = {
        "image": np.arange(16 * 2, dtype=np.float32).reshape(16, 2),
        "label": np.arange(16, dtype=np.int32),
    }
    placed = train.shard_batch(batch, mesh)
    for shard in placed["label"].addressable_shards:
        i = mesh.devices.tolist().index(shard.device)
        np.testing.assert_array_equal(np.asarray(shard.data), [2 * i, 2 * i + 1])
    again = train.shard_batch(placed, mesh)
    assert again["image"] is placed["image"]


def test_pmap_layouts_round_trip(mesh):
    batch = {"image": np.zeros((16, 4, 4, 1)), "label": np.arange(16)}
    stacked = train.pmap_batch(batch, mesh)
    assert stacked["image"].shape == (8, 2, 4, 4, 1)
    np.testing.assert_array_equal(stacked["label"][3], [6, 7])
    tree = {"w": np.arange(6.0).reshape(2, 3), "s": np.int32(4)}
    per_device = train.stack_for_pmap(tree, mesh)
    assert per_device["w"].shape == (8, 2, 3)
    assert len(per_device["w"].addressable_shards) == 8
    back = jax.device_get(train.unstack_from_pmap(per_device))
    np.testing.assert_array_equal(back["w"], tree["w"])
    assert int(back["s"]) == 4
    with pytest.raises(ValueError, match="multiple"):
        train.pmap_batch({"label": np.arange(12)}, mesh)


def test_dropout_model_trains_deterministically_under_shard_map(mesh, tx):
    """Same state, same batch -> the same result (dropout keys come from the state)."""
    model = TinyBN()
    task = train.classification()
    step = train.make_train_step(model, task, tx, strategy="shard_map", mesh=mesh)
    host = jax.device_get(train.create_train_state(model, tx, 0, (1, 6, 6, 3), mesh=mesh))
    rng = np.random.default_rng(0)
    batch = {
        "image": rng.normal(size=(16, 6, 6, 3)).astype(np.float32),
        "label": rng.integers(0, 3, 16).astype(np.int32),
    }
    first, m1 = step(train.replicate(host, mesh), batch)
    second, m2 = step(train.replicate(host, mesh), batch)
    assert max_abs_diff(jax.device_get(first), jax.device_get(second)) == 0.0
    assert float(m1["loss"][0]) == float(m2["loss"][0])
    # Dropout is active in training: eval-mode loss on the same batch differs.
    evaluate = train.make_eval_step(model, task, strategy="shard_map", mesh=mesh)
    assert float(evaluate(train.replicate(host, mesh), batch)["loss"][0]) != float(m1["loss"][0])
