"""Restore across device counts (8 -> 1 -> 8) and a process killed in the middle of a save."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from cnnjax.checkpoint import CheckpointManager

REPO = Path(__file__).resolve().parents[2]


def expected_tree():
    """Independent of any device layout: plain NumPy values."""
    return {
        "w": np.arange(8 * 6, dtype=np.float32).reshape(8, 6) / 7.0,
        "b": np.linspace(-1, 1, 5).astype(np.float32),
        "step": np.int32(11),
    }


def run_python(code: str, devices: int) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120, env=env, cwd=REPO)


def test_restore_8_to_1_to_8_devices(tmp_path):
    assert jax.device_count() == 8
    mesh = jax.make_mesh((8,), ("data",))
    sharded = jax.NamedSharding(mesh, jax.P("data"))
    replicated = jax.NamedSharding(mesh, jax.P())
    ref = expected_tree()
    tree = {
        "w": jax.device_put(ref["w"], sharded),
        "b": jax.device_put(ref["b"], replicated),
        "step": jax.device_put(ref["step"], replicated),
    }
    with CheckpointManager(tmp_path / "eight") as m:
        m.save(11, tree, data={"pos": 3})
        m.wait()

    proc = run_python(
        f"""
        import jax, jax.numpy as jnp, numpy as np
        from cnnjax.checkpoint import CheckpointManager
        assert jax.device_count() == 1
        target = {{"w": jnp.zeros((8, 6)), "b": jnp.zeros(5), "step": jnp.int32(0)}}
        with CheckpointManager({str(tmp_path / "eight")!r}, read_only=True) as m:
            r = m.restore(target)
        assert r.step == 11 and r.data == {{"pos": 3}}
        assert len(r.state["w"].sharding.device_set) == 1
        np.testing.assert_array_equal(np.asarray(r.state["w"]),
                                      np.arange(48, dtype=np.float32).reshape(8, 6) / 7.0)
        with CheckpointManager({str(tmp_path / "one")!r}) as m:
            m.save(12, r.state)
        print("ok")
        """,
        devices=1,
    )
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]

    target = {
        "w": jax.device_put(jnp.zeros((8, 6)), sharded),
        "b": jax.device_put(jnp.zeros(5), replicated),
        "step": jax.device_put(jnp.int32(0), replicated),
    }
    with CheckpointManager(tmp_path / "one", read_only=True) as m:
        r = m.restore(target)
    assert r.step == 12
    assert r.state["w"].sharding == sharded and r.state["b"].sharding == replicated
    for key, value in ref.items():
        np.testing.assert_array_equal(np.asarray(r.state[key]), value)


def test_process_killed_before_the_rename_keeps_the_previous_checkpoint(tmp_path):
    directory = tmp_path / "ckpt"
    proc = run_python(
        f"""
        import os, signal
        import jax.numpy as jnp
        from orbax.checkpoint._src.path import atomicity
        from cnnjax.checkpoint import CheckpointManager
        m = CheckpointManager({str(directory)!r})
        m.save(1, {{"w": jnp.ones((64, 64))}})
        m.wait()
        # die exactly when step 2 is fully written to its tmp directory, before the rename
        async def die(self, *a, **k):
            os.kill(os.getpid(), signal.SIGKILL)
        atomicity.AtomicRenameTemporaryPath.finalize = die
        m.save(2, {{"w": jnp.full((64, 64), 2.0)}})
        m.wait()
        print("not killed")
        """,
        devices=1,
    )
    assert proc.returncode == -9, proc.stdout + proc.stderr[-3000:]
    leftovers = [p.name for p in directory.iterdir() if "tmp" in p.name]
    assert leftovers and leftovers[0].startswith("2.")  # step 2 was written, never renamed
    with CheckpointManager(directory) as m:
        assert m.all_steps() == [1]
        r = m.restore({"w": jnp.zeros((64, 64))})
    assert r.step == 1
    np.testing.assert_array_equal(np.asarray(r.state["w"]), np.ones((64, 64), np.float32))
    # the manager cleaned the leftover up on start
    assert not [p for p in directory.iterdir() if "tmp" in p.name]
