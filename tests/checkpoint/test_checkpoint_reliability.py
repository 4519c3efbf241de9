"""CheckpointManager under faults: non-finite states, damaged files of each kind, a corrupt
given step, errors inside the `with` block (issue 15, items 1 and 7)."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_checkpoint_manager import assert_trees_equal, make_state

from cnnjax.checkpoint import (
    CheckpointManager,
    CorruptCheckpointError,
    NonFiniteCheckpointError,
    StructureMismatchError,
    nonfinite_paths,
)
from cnnjax.checkpoint import manager as manager_lib


def poisoned(value: float):
    state = make_state(step=1)
    params = dict(state.params)
    params["Dense_0"] = {"kernel": state.params["Dense_0"]["kernel"].at[1, 0].set(value)}
    return state.replace(params=params)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_save_refuses_nonfinite_state(tmp_path, value):
    with CheckpointManager(tmp_path / "ckpt", async_save=False) as m:
        m.save(1, make_state(step=1))
        with pytest.raises(NonFiniteCheckpointError,
                           match=r"step 2 .*NaN/Inf in 1 arrays: params/Dense_0/kernel$"):
            m.save(2, poisoned(value))
        assert m.all_steps() == [1]
    assert not (tmp_path / "ckpt" / "2").exists()


def test_nonfinite_paths_names_every_bad_leaf_of_any_kind():
    mesh = jax.make_mesh((8,), ("data",))
    sharded = jax.device_put(jnp.ones((8, 2)).at[5, 1].set(jnp.inf),
                             jax.NamedSharding(mesh, jax.P("data")))
    tree = {
        "params": {"a": jnp.ones(3), "b": jnp.array([1.0, jnp.nan], jnp.bfloat16)},
        "batch_stats": {"var": sharded},
        "opt_state": {"mu": np.array([np.inf], np.float32), "count": jnp.int32(3)},
        "rng": jax.random.key(0),
        "empty": jnp.zeros((0,)),
    }
    assert nonfinite_paths(tree) == ["batch_stats/var", "opt_state/mu", "params/b"]
    assert nonfinite_paths({"x": jnp.ones(2), "n": np.arange(3)}) == []


def save_two(directory: Path) -> None:
    with CheckpointManager(directory, async_save=False) as m:
        m.save(1, make_state(step=1, seed=1))
        m.save(2, make_state(step=2, seed=2))


def damage_metadata_missing(step: Path) -> None:
    (step / "state" / "_METADATA").unlink()


def damage_metadata_garbage(step: Path) -> None:
    (step / "state" / "_METADATA").write_bytes(b"\x00garbage{")


def damage_metadata_drops_an_array(step: Path) -> None:
    path = step / "state" / "_METADATA"
    meta = json.loads(path.read_text())
    tree = meta["tree_metadata"]
    del tree[next(k for k in tree if "Dense_0" in k and "params" in k)]
    path.write_text(json.dumps(meta))


def damage_manifest_missing(step: Path) -> None:
    (step / "state" / "manifest.ocdbt").unlink()


def damage_data_files_missing(step: Path) -> None:
    for f in (step / "state").rglob("*"):
        if f.is_file() and f.parent.name == "d":
            f.unlink()


def damage_meta_item_missing(step: Path) -> None:
    (step / "meta" / "metadata").unlink()


DAMAGES = [damage_metadata_missing, damage_metadata_garbage, damage_metadata_drops_an_array,
           damage_manifest_missing, damage_data_files_missing, damage_meta_item_missing]


@pytest.mark.parametrize("damage", DAMAGES, ids=lambda f: f.__name__[7:])
def test_structurally_unreadable_latest_is_corrupt_and_falls_back(tmp_path, damage):
    save_two(tmp_path / "ckpt")
    damage(tmp_path / "ckpt" / "2")
    with CheckpointManager(tmp_path / "ckpt") as m:
        r = m.restore(make_state())
        assert m.all_steps() == [1]
    assert r.step == 1 and len(r.skipped) == 1 and "step 2" in r.skipped[0]
    assert_trees_equal(r.state, make_state(step=1, seed=1))
    assert [p.name[:2] for p in (tmp_path / "corrupt_checkpoints").iterdir()] == ["2-"]


def test_readable_checkpoint_of_another_architecture_is_still_a_mismatch(tmp_path):
    save_two(tmp_path / "ckpt")
    with CheckpointManager(tmp_path / "ckpt") as m:
        with pytest.raises(StructureMismatchError, match="params/Dense_0/kernel"):
            m.restore(make_state(out=6))
        assert m.all_steps() == [1, 2]  # nothing was moved aside
    assert not (tmp_path / "corrupt_checkpoints").exists()


@pytest.mark.parametrize("read_only", [False, True])
def test_restore_a_given_corrupt_step_names_it_and_the_others(tmp_path, read_only):
    save_two(tmp_path / "ckpt")
    damage_metadata_missing(tmp_path / "ckpt" / "1")
    with CheckpointManager(tmp_path / "ckpt", read_only=read_only) as m:
        with pytest.raises(CorruptCheckpointError) as info:
            m.restore(make_state(), 1)
        assert m.restore(make_state(), 2).step == 2
    message = str(info.value)
    assert "checkpoint step 1 in" in message and "is corrupt" in message
    assert "choose another step ([2]) or 'latest'" in message
    assert "Traceback" not in message and "\n  File" not in message


def test_error_inside_with_block_closes_the_manager(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with CheckpointManager(tmp_path / "ckpt") as m:
            m.save(1, make_state(step=1))
            raise RuntimeError("boom")
    with pytest.raises(ValueError, match="is closed"):
        m.save(2, make_state(step=2))
    m.close()  # idempotent
    with CheckpointManager(tmp_path / "ckpt", read_only=True) as again:
        assert again.all_steps() == [1]  # the pending save was finished on the way out


def test_close_releases_orbax_even_when_the_last_save_failed(tmp_path, monkeypatch):
    m = CheckpointManager(tmp_path / "ckpt")
    closed = []
    monkeypatch.setattr(m._mngr, "wait_until_finished",
                        lambda: (_ for _ in ()).throw(OSError("disk full")))
    monkeypatch.setattr(m._mngr, "close", lambda: closed.append(True))
    with pytest.raises(OSError, match="disk full"):
        m.close()
    assert closed == [True]


def test_nonfinite_checkpoint_on_disk_is_corrupt_and_falls_back(tmp_path, monkeypatch):
    """Workdirs written before the save check: the poisoned step is passed over."""
    with CheckpointManager(tmp_path / "ckpt", async_save=False) as m:
        m.save(1, make_state(step=1, seed=1))
        monkeypatch.setattr(manager_lib, "nonfinite_paths", lambda tree: [])
        m.save(2, poisoned(np.inf))
        monkeypatch.undo()
        r = m.restore(make_state())
        assert m.all_steps() == [1]
    assert r.step == 1 and "NaN/Inf (saved by a run that diverged) in 1 arrays: " \
        "['params/Dense_0/kernel']" in r.skipped[0]
    assert_trees_equal(r.state, make_state(step=1, seed=1))
