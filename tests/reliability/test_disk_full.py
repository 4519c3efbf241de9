"""A disk that fills during an asynchronous checkpoint ("Also" of issue 23): the one-line error
was line 346 of 400 lines of Orbax/asyncio tracebacks. Now the run ends with one line naming
the step, the folder and ENOSPC among a few log lines, and the same command resumes once there
is space. A real full file system: a small tmpfs in a private mount namespace (root)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "experiments" / "configs" / "tiny.py"


def _mount_namespaces() -> str | None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return "needs root and unshare for a small tmpfs"
    probe = subprocess.run(["unshare", "--mount", "sh", "-c", "mount -t tmpfs tmpfs /mnt"],
                           capture_output=True)
    return None if probe.returncode == 0 else f"no mount namespace here: {probe.stderr!r}"


@pytest.mark.slow  # two tiny training runs in subprocesses (about 30 s)
@pytest.mark.skipif(_mount_namespaces() is not None, reason=str(_mount_namespaces()))
def test_disk_full_during_checkpoint_is_one_line_and_resumable(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    run = (f"{sys.executable} -m experiments.classify --workdir={mnt}/w --config={TINY} "
           "--noplots")
    script = (f"mount -t tmpfs -o size=300k tmpfs {mnt} && "
              f"{run} >{tmp_path}/out1 2>{tmp_path}/err1; echo $? >{tmp_path}/rc1; "
              f"mount -o remount,size=8m {mnt} && "
              f"{run} >{tmp_path}/out2 2>{tmp_path}/err2; echo $? >{tmp_path}/rc2")
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    subprocess.run(["unshare", "--mount", "sh", "-c", script], env=env, cwd=ROOT, timeout=500,
                   check=True)
    err1 = (tmp_path / "err1").read_text()
    assert (tmp_path / "rc1").read_text().strip() == "1", err1
    assert "Traceback" not in err1 and len(err1.strip().splitlines()) <= 8, err1
    (line,) = [x for x in err1.splitlines() if x.startswith("experiments.classify: error:")]
    assert "[Errno 28] checkpoint step" in line and "No space left on device" in line
    assert f"{mnt}/w/checkpoints" in line and "run the same command to resume" in line
    err2 = (tmp_path / "err2").read_text()
    assert (tmp_path / "rc2").read_text().strip() == "0", err2
    assert "resumed from checkpoint step" in err2 + (tmp_path / "out2").read_text()
