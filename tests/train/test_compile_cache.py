"""JAX's persistent compilation cache as cnnjax turns it on: a second process loads the
compiled program (oneDNN custom calls included) from disk and computes the same bits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PROGRAM = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import jax, jax.numpy as jnp, numpy as np
    from jax import monitoring
    import cnnjax.train.runner.compile_cache as cc
    from cnnjax import ops
    from cnnjax.ops import onednn

    events = []
    monitoring.register_event_listener(lambda name, **kw: events.append(name))
    cc.cache_dir = lambda: Path(sys.argv[1])  # this test's folder, not the user's
    folder = cc.enable_compilation_cache(sys.argv[2] == "on")

    def loss(x, k):
        return jnp.sum(jnp.tanh(ops.conv(x, k, stride=2, padding=1)) ** 2)

    x = jax.random.normal(jax.random.key(0), (4, 17, 17, 3))
    k = jax.random.normal(jax.random.key(1), (3, 3, 3, 8))
    step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    hlo = step.lower(x, k).as_text()
    value, grads = step(x, k)
    print(json.dumps({
        "folder": None if folder is None else str(folder),
        "hits": events.count("/jax/compilation_cache/cache_hits"),
        "onednn": onednn.available() and "custom_call" in hlo,
        "bits": [np.asarray(a).tobytes().hex() for a in (value, *grads)],
    }))
""")


def _run(cache: Path, switch: str, **env_extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO), **env_extra)
    proc = subprocess.run([sys.executable, "-c", PROGRAM, str(cache), switch], env=env,
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_second_process_loads_the_compiled_step_and_gets_the_same_bits(tmp_path):
    first = _run(tmp_path, "on")
    assert first["folder"] == str(tmp_path / "xla") and first["hits"] == 0
    assert any((tmp_path / "xla").iterdir())  # the compiled step was written
    second = _run(tmp_path, "on")
    assert second["hits"] >= 1
    assert second["bits"] == first["bits"]
    if not first["onednn"]:
        pytest.skip("oneDNN kernel unavailable here: the custom-call case was not exercised")


def test_switched_off_by_config_or_environment(tmp_path):
    assert _run(tmp_path, "off")["folder"] is None
    off = _run(tmp_path / "env", "on", CNNJAX_COMPILATION_CACHE="0")
    assert off["folder"] is None and not (tmp_path / "env").exists()


def test_unwritable_folder_turns_it_off_with_a_warning(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", PROGRAM, str(blocker), "on"], env=env,
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["folder"] is None
    assert "compilation cache off: cannot write" in proc.stderr
