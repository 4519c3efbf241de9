"""A read-only HOME or CNNJAX_CACHE_DIR (issue 23 item 3): the oneDNN kernel build raised
OSError ([Errno 30]), not BuildError, and every run failed. Now: one warning, XLA's convs.

The read-only directory is a real read-only tmpfs mounted in a private mount namespace
(`unshare --mount`, root only: chmod does not stop root); where that is not possible, a path
under a regular file gives the same OSError path (ENOTDIR).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import warnings
    import numpy as np
    from cnnjax import ops
    from cnnjax.ops import lowering, onednn
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 4)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal((3, 3, 4, 5)).astype(np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = ops.conv(x, w, padding=1)
        ops.conv(x, w, padding=2)
    spec = lowering.ConvSpec((1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    assert np.array_equal(np.asarray(y), np.asarray(lowering.conv_xla(x, w, spec)))
    msgs = [str(c.message) for c in caught if "oneDNN" in str(c.message)]
    print(len(msgs))
    print(msgs[0] if msgs else "")
""")


def _read_only_mounts() -> str | None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return "needs root and unshare for a read-only mount"
    probe = subprocess.run(["unshare", "--mount", "sh", "-c",
                            "mount -t tmpfs -o ro tmpfs /mnt && true"], capture_output=True)
    return None if probe.returncode == 0 else f"no mount namespace here: {probe.stderr!r}"


def _run(env_updates: dict[str, str], read_only: Path | None = None
         ) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **env_updates,
           "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    for name in ("CNNJAX_ONEDNN", "CNNJAX_ONEDNN_ROOT", "CXX"):
        env.pop(name, None)
    command = [sys.executable, "-c", SCRIPT]
    if read_only is not None:
        read_only.mkdir(parents=True, exist_ok=True)
        command = ["unshare", "--mount", "sh", "-c",
                   f'mount -t tmpfs -o ro tmpfs "{read_only}" && exec "$@"', "sh", *command]
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.skipif(_read_only_mounts() is not None, reason=str(_read_only_mounts()))
@pytest.mark.parametrize("which", ["CNNJAX_CACHE_DIR", "HOME"])
def test_read_only_cache_falls_back_to_xla_with_one_warning(tmp_path, which):
    ro = tmp_path / "ro"
    env = {"CNNJAX_CACHE_DIR": str(ro / "cache")} if which == "CNNJAX_CACHE_DIR" else {
        "HOME": str(ro), "CNNJAX_CACHE_DIR": "", "XDG_CACHE_HOME": ""}
    proc = _run(env, read_only=ro)
    assert proc.returncode == 0, proc.stderr[-3000:]
    count, message = proc.stdout.splitlines()
    assert count == "1", proc.stdout
    assert "cannot write the kernel cache" in message and str(ro) in message
    assert "CNNJAX_CACHE_DIR" in message and "Traceback" not in proc.stderr


def test_cache_dir_that_cannot_be_created_falls_back(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    proc = _run({"CNNJAX_CACHE_DIR": str(blocker / "cache")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    count, message = proc.stdout.splitlines()
    assert count == "1" and "cannot write the kernel cache" in message, proc.stdout


def test_truncated_cached_kernel_is_rebuilt_not_loaded(tmp_path):
    """A truncated kernel in the cache crashed the process with SIGBUS (exit 135) at dlopen
    (found by the second probe round of issue 23); it is now detected and rebuilt."""
    from cnnjax.ops.onednn import native

    try:
        built = native.build()
    except native.BuildError as e:
        pytest.skip(f"the kernel cannot be built here: {e}")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / built.name).write_bytes(built.read_bytes()[:1000])
    script = SCRIPT + "print(onednn.available())\n"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "CNNJAX_CACHE_DIR": str(cache),
           "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    for name in ("CNNJAX_ONEDNN", "CNNJAX_ONEDNN_ROOT", "CXX"):
        env.pop(name, None)
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    count, message, available = proc.stdout.splitlines()
    assert count == "1" and "is damaged (truncated); rebuilding it" in message
    assert available == "True"
    assert (cache / built.name).stat().st_size == built.stat().st_size
