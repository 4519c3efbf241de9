"""Checkpoints and the EMA of the weights: a state with EMA round-trips bitwise, a checkpoint
written before `TrainState` had an `ema` field restores into a state without EMA, and one
without EMA restored into a run with EMA is a mismatch that names the EMA arrays."""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import numpy as np
import pytest

from cnnjax import train
from cnnjax.checkpoint import CheckpointManager, StructureMismatchError


class TinyBN(nn.Module):
    @nn.compact
    def __call__(self, x, *, train: bool = False):
        x = nn.BatchNorm(use_running_average=not train)(nn.Conv(4, (3, 3))(x))
        return nn.Dense(3)(x.mean(axis=(1, 2)))


@flax.struct.dataclass
class OldTrainState:
    """`TrainState` as it was before EMA (the same fields, no `ema`)."""

    step: Any
    params: Any
    model_state: Any
    opt_state: Any
    rng: Any


def _state(ema: bool) -> train.TrainState:
    tx = train.make_optimizer({"name": "adamw", "learning_rate": 1e-3})
    state = train.create_train_state(TinyBN(), tx, 0, (8, 8, 8, 3), ema=ema)
    if ema:  # an EMA that differs from the weights, as after training
        state = state.replace(ema=jax.tree.map(lambda x: x * 0.5 + 0.25, state.ema))
    return state


def _bytes(tree) -> dict:
    leaves = jax.tree_util.tree_flatten_with_path(jax.device_get(tree))[0]
    return {jax.tree_util.keystr(p): np.asarray(v).tobytes() for p, v in leaves}


def test_state_with_ema_round_trips_bitwise(tmp_path):
    state = _state(ema=True)
    with CheckpointManager(tmp_path / "ckpt", async_save=False) as m:
        m.save(1, state)
        restored = m.restore(_state(ema=True).replace(ema=jax.tree.map(
            lambda x: x * 0, state.ema)))
    assert any(".ema" in k for k in _bytes(restored.state))
    assert _bytes(restored.state) == _bytes(state)


def test_old_checkpoint_without_ema_still_restores(tmp_path):
    new = _state(ema=False)
    old = OldTrainState(step=new.step + 5, params=jax.tree.map(lambda x: x + 1, new.params),
                        model_state=new.model_state, opt_state=new.opt_state, rng=new.rng)
    with CheckpointManager(tmp_path / "ckpt", async_save=False) as m:
        m.save(5, old)
    with CheckpointManager(tmp_path / "ckpt", read_only=True) as m:
        restored = m.restore(new)
    assert restored.state.ema is None and int(restored.state.step) == 5
    assert _bytes(restored.state) == {k: v for k, v in _bytes(old).items()}


def test_checkpoint_without_ema_in_a_run_with_ema_names_the_ema_arrays(tmp_path):
    with CheckpointManager(tmp_path / "ckpt", async_save=False) as m:
        m.save(1, _state(ema=False))
        with pytest.raises(StructureMismatchError, match=r"ema/params/Conv_0/kernel"):
            m.restore(_state(ema=True))
