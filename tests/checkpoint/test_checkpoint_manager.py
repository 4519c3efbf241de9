"""CheckpointManager: round trip, retention, best, structure errors, corruption, workdir checks."""

import json
import logging
from pathlib import Path
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnnjax.checkpoint import (
    CheckpointManager,
    CorruptCheckpointError,
    StructureMismatchError,
    WorkdirNotWritableError,
    describe_mismatch,
    ensure_writable,
    flat_shapes,
    from_json,
    to_json,
    tree_fingerprint,
)


@flax.struct.dataclass
class State:
    step: Any
    params: Any
    opt_state: Any
    rng: Any


def make_state(out: int = 4, step: int = 0, seed: int = 0) -> State:
    k = jax.random.key(seed)
    params = {
        "Conv_0": {"kernel": jax.random.normal(k, (3, 3, 1, out)), "bias": jnp.zeros(out)},
        "Dense_0": {"kernel": jnp.ones((out, 2))},
    }
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3))
    return State(step=jnp.int32(step), params=params, opt_state=tx.init(params), rng=k)


def assert_trees_equal(a, b):
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    assert ta == tb
    for x, y in zip(la, lb, strict=True):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_state_data_loop_meta(tmp_path):
    state = make_state(step=7)
    data_state = b'{"next_index": 12}\x00\xff'
    with CheckpointManager(tmp_path / "ckpt") as m:
        assert m.save(7, state, data=data_state, loop={"pending": [[1.5, 2]]}, meta={"seed": 3})
        assert not m.save(7, state)  # an existing step is never overwritten
        m.wait()
        r = m.restore(make_state(step=0, seed=1))
    assert r.step == 7
    assert_trees_equal(r.state, state)
    assert r.data == data_state
    assert r.loop == {"pending": [[1.5, 2]]}
    assert r.meta["seed"] == 3 and r.meta["step"] == 7
    assert r.skipped == ()


def test_empty_directory_restores_none(tmp_path):
    with CheckpointManager(tmp_path / "ckpt") as m:
        assert m.restore(make_state()) is None
        assert m.latest_step() is None and m.best_step() is None


def test_restore_given_step_and_unknown_step(tmp_path):
    with CheckpointManager(tmp_path / "ckpt", keep=5) as m:
        for s in (1, 2, 3):
            m.save(s, make_state(step=s))
        m.wait()
        assert int(m.restore(make_state(), 2).state.step) == 2
        with pytest.raises(ValueError, match=r"step 9 is not in .*saved steps: \[1, 2, 3\]"):
            m.restore(make_state(), 9)


def expected_retained(steps, metrics, keep, keep_best, mode):
    """Independent reference: latest `keep` steps, plus the best `keep_best` steps with metrics."""
    latest = set(sorted(steps)[-keep:])
    scored = [(metrics[s], s) for s in steps if s in metrics]
    scored.sort(reverse=(mode == "max"))
    return sorted(latest | {s for _, s in scored[:keep_best]})


@pytest.mark.parametrize("mode", ["max", "min"])
def test_best_k_retention_and_best_step(tmp_path, mode):
    values = {2: 0.5, 4: 0.9, 6: 0.7, 8: 0.1, 10: 0.3}
    steps = list(range(1, 12))
    with CheckpointManager(
        tmp_path / "ckpt", keep=2, keep_best=2, best_metric="accuracy", best_mode=mode
    ) as m:
        for s in steps:
            metrics = {"accuracy": values[s], "loss": 1.0} if s in values else None
            m.save(s, make_state(step=s), metrics=metrics)
        m.wait()
        kept = m.all_steps()
        best = m.best_step()
        restored = m.restore(make_state(), "best")
    assert kept == expected_retained(steps, values, 2, 2, mode)
    expected_best = max(values, key=values.get) if mode == "max" else min(values, key=values.get)
    assert best == expected_best == restored.step
    assert restored.metrics["accuracy"] == values[expected_best]


def test_best_metric_missing_from_metrics_is_an_error(tmp_path):
    with CheckpointManager(tmp_path / "c", keep_best=1, best_metric="accuracy") as m:
        with pytest.raises(ValueError, match="best_metric 'accuracy' not in the metrics"):
            m.save(1, make_state(), metrics={"loss": 0.3})


def test_structure_mismatch_names_parameters(tmp_path):
    with CheckpointManager(tmp_path / "ckpt") as m:
        m.save(1, make_state(out=4))
        m.wait()
        with pytest.raises(StructureMismatchError) as info:
            m.restore(make_state(out=6))
    message = str(info.value)
    assert "params/Conv_0/kernel: checkpoint (3, 3, 1, 4) float32, model (3, 3, 1, 6)" in message
    assert "params/Dense_0/kernel: checkpoint (4, 2) float32, model (6, 2)" in message
    # parameters are listed before optimizer slots
    assert message.index("params/Conv_0") < message.index("opt_state")


def test_describe_mismatch_missing_and_extra():
    saved = {"params/a": ((2,), "float32"), "params/old": ((1,), "float32")}
    target = {"params/a": ((2,), "float32"), "params/new": ((3,), "int32")}
    lines = describe_mismatch(saved, target)
    assert lines == [
        "params/new: in the model (3,) int32, absent from the checkpoint",
        "params/old: in the checkpoint (1,) float32, absent from the model",
    ]
    assert describe_mismatch(saved, saved) == []


def test_flat_shapes_of_typed_key_is_its_key_data():
    shapes = flat_shapes({"rng": jax.random.key(0), "w": jnp.zeros((2, 3), jnp.bfloat16)})
    assert shapes == {"rng": ((2,), "uint32"), "w": ((2, 3), "bfloat16")}


def test_fingerprint_detects_any_bit_and_position():
    x = jnp.arange(12, dtype=jnp.float32).reshape(3, 4)
    base = tree_fingerprint({"x": x})["x"]
    flipped = np.asarray(x).copy().view(np.uint32)
    flipped[1, 2] ^= 1
    assert tree_fingerprint({"x": jnp.asarray(flipped.view(np.float32))})["x"] != base
    swapped = np.asarray(x).copy()
    swapped[0, 0], swapped[0, 1] = swapped[0, 1], swapped[0, 0]
    assert tree_fingerprint({"x": jnp.asarray(swapped)})["x"] != base


def test_fingerprint_is_sharding_independent():
    mesh = jax.make_mesh((8,), ("data",))
    x = jnp.arange(64, dtype=jnp.float32).reshape(8, 8)
    sharded = jax.device_put(x, jax.NamedSharding(mesh, jax.P("data")))
    assert tree_fingerprint({"x": sharded}) == tree_fingerprint({"x": x})
    # independent reference: the same position-weighted sum in numpy with uint32 wrap-around
    words = np.asarray(x).view(np.uint32).ravel().astype(np.uint64)
    weights = (np.arange(64, dtype=np.uint64) * 2654435761 + 1) % 2**32
    assert tree_fingerprint({"x": x})["x"] == int((words * weights).sum() % 2**32)


def _step_files(step_dir: Path) -> list[Path]:
    return [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]


def test_corrupt_latest_falls_back_to_previous(tmp_path, caplog):
    with CheckpointManager(tmp_path / "ckpt", keep=3) as m:
        for s in (1, 2, 3):
            m.save(s, make_state(step=s, seed=s))
        m.wait()
    for f in _step_files(tmp_path / "ckpt" / "3"):
        f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])  # truncate every data file
    with caplog.at_level(logging.WARNING, logger="cnnjax.checkpoint"):
        with CheckpointManager(tmp_path / "ckpt", keep=3) as m:
            r = m.restore(make_state())
            assert m.all_steps() == [1, 2]  # the corrupt step was moved aside
            # the step can be written again
            assert m.save(3, make_state(step=3))
    assert r.step == 2
    assert_trees_equal(r.state, make_state(step=2, seed=2))
    assert len(r.skipped) == 1 and "step 3" in r.skipped[0] and "corrupt" in r.skipped[0]
    assert any("checkpoint step 3" in rec.getMessage() for rec in caplog.records)
    assert [p.name[:2] for p in (tmp_path / "corrupt_checkpoints").iterdir()] == ["3-"]


def test_fingerprint_mismatch_is_corruption(tmp_path):
    with CheckpointManager(tmp_path / "ckpt") as m:
        m.save(1, make_state(step=1))
        m.wait()
    meta_file = tmp_path / "ckpt" / "1" / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    meta["fingerprint"]["params/Dense_0/kernel"] += 1
    meta_file.write_text(json.dumps(meta))
    with CheckpointManager(tmp_path / "ckpt", read_only=True) as m:
        with pytest.raises(CorruptCheckpointError, match=r"params/Dense_0/kernel"):
            m.restore(make_state())


def test_leftover_tmp_directory_is_ignored(tmp_path):
    with CheckpointManager(tmp_path / "ckpt") as m:
        m.save(1, make_state(step=1))
        m.wait()
    # what a process killed in the middle of writing step 2 leaves behind
    tmp_dir = tmp_path / "ckpt" / "2.orbax-checkpoint-tmp-1234567"
    (tmp_dir / "state").mkdir(parents=True)
    (tmp_dir / "state" / "partial").write_bytes(b"\x00" * 10)
    with CheckpointManager(tmp_path / "ckpt") as m:
        assert m.all_steps() == [1]
        assert m.restore(make_state()).step == 1


def test_unwritable_workdir_fails_fast(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(WorkdirNotWritableError, match=r"a_file/work.*is not writable"):
        ensure_writable(blocker / "work")
    with pytest.raises(WorkdirNotWritableError):
        CheckpointManager(blocker / "ckpt")


def test_json_helpers_round_trip():
    value = {"a": np.float32(1.5), "b": np.arange(3), "c": b"\x01\x02", "d": [jnp.int32(4)]}
    out = from_json(json.loads(json.dumps(to_json(value))))
    assert out == {"a": 1.5, "b": [0, 1, 2], "c": b"\x01\x02", "d": [4]}


def test_bad_arguments():
    with pytest.raises(ValueError, match="keep must be an int >= 1"):
        CheckpointManager("/tmp/unused", keep=0, read_only=True)
    with pytest.raises(ValueError, match="needs best_metric"):
        CheckpointManager("/tmp/unused", keep_best=2, read_only=True)
    with pytest.raises(ValueError, match="best_mode must be 'max' or 'min'"):
        CheckpointManager("/tmp/unused", best_metric="a", best_mode="up", read_only=True)


def test_fingerprint_host_and_device_paths_agree():
    values = {
        "f32": np.arange(100, dtype=np.float32) / 7,
        "bf16": np.arange(10).astype(jnp.bfloat16),
        "bool": np.array([True, False, True]),
        "i32": np.arange(-5, 5, dtype=np.int32),
    }
    on_host = tree_fingerprint(values)  # NumPy leaves: host formula
    on_device = tree_fingerprint({k: jnp.asarray(v) for k, v in values.items()})
    assert on_host == on_device and len(on_host) == 4
