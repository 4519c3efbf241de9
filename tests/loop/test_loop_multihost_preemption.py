"""Preemption of a multi-process run: a signal that reaches ONE process stops every process at
the same step, after one checkpoint written together, and the resumed run ends bitwise equal
to an uninterrupted one.

Two local processes x 2 CPU devices (`jax.distributed` + gloo), the loop tests' driver. Process
1 alone sends itself SIGTERM while logging step 4 (log every 2 steps, checkpoint every 6); the
processes agree after that log step and both stop there, process 0 unsignalled. Before they
agreed, process 1 stopped and entered the collective checkpoint while process 0 went on to
step 5: both hung.
"""

from __future__ import annotations

import json
import socket
import subprocess

import pytest
from loop_helpers import REPO, TOTAL_STEPS, driver_command, tiny_config
from test_loop_resume import assert_same_state, metric_rows

pytestmark = pytest.mark.slow  # three 2-process trainings: 0.5-1 min on 2 cores

TIMEOUT_S = 240  # a hang (processes stopping at different steps) fails here


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return int(s.getsockname()[1])


def run_two_processes(workdir, config, flags_of_process_1=()) -> list[dict]:
    """Both processes' summaries (the driver's last stdout line)."""
    port = _free_port()
    procs = []
    for i in range(2):
        flags = ["--coordinator", f"localhost:{port}", "--num-processes", "2",
                 "--process-id", str(i), *(flags_of_process_1 if i == 1 else ())]
        argv, env = driver_command(workdir, config, *flags, devices=2)
        procs.append(subprocess.Popen(argv, env=env, cwd=REPO, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=TIMEOUT_S))
    except subprocess.TimeoutExpired:
        pytest.fail(f"the processes did not finish within {TIMEOUT_S} s (hung)")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for i, (p, (_, err)) in enumerate(zip(procs, outputs, strict=True)):
        assert p.returncode == 0, f"process {i} exited {p.returncode}:\n{err[-3000:]}"
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]


def test_a_signal_to_one_process_stops_all_at_one_step_and_resumes_exactly(tmp_path):
    config = tiny_config(eval_every_steps=6, checkpoint_every_steps=6)
    reference = tmp_path / "reference"
    assert [s["status"] for s in run_two_processes(reference, config)] == ["completed"] * 2

    workdir = tmp_path / "run"
    summaries = run_two_processes(workdir, config, ["--sigterm-at-step", "4"])
    assert [(s["status"], s["step"], s["signal"]) for s in summaries] == [
        ("preempted", 4, 15)] * 2  # process 0 takes process 1's signal (SIGTERM)
    assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir()
                  if p.name.isdigit()) == [4]

    summaries = run_two_processes(workdir, config)
    assert [(s["status"], s["step"]) for s in summaries] == [("completed", TOTAL_STEPS)] * 2
    assert metric_rows(workdir) == metric_rows(reference)
    assert_same_state(final_state(workdir), final_state(reference))
    assert len(data_states(reference)) == 2  # metadata, metadata.process_1
    assert data_states(workdir) == data_states(reference)


def final_state(workdir):
    """The latest train state, restored onto this process's devices (the checkpoint was
    written by 2 processes: orbax needs the target's shardings)."""
    import jax

    from cnnjax.train.runner.components import build
    from cnnjax.train.runner.evaluation import load_config, restore

    state, _, _ = restore(build(load_config(workdir)), workdir, "latest")
    return jax.device_get(state)


def data_states(workdir) -> dict[str, str]:
    """Each process's saved data-iterator state of the final checkpoint, as text."""
    data = workdir / "checkpoints" / str(TOTAL_STEPS) / "data"
    return {p.name: p.read_text() for p in sorted(data.glob("metadata*"))}
