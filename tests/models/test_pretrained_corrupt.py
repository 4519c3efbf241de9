"""Damaged weights files for `init_from` / `from_torchvision` (issue 23 item 6): empty or
truncated .pth (EOFError traceback, or "[Errno 22]" without the file), truncated or garbage
.safetensors (tracebacks), an int8 .safetensors silently cast. Now one ValueError naming the
file; integer tensors are refused."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from cnnjax.models.pretrained import from_torchvision, read_state_dict

STATE = {"conv1.weight": np.ones((4, 3, 3, 3), np.float32),
         "fc.bias": np.zeros(10, np.float32)}


def _safetensors(path, state=STATE):
    from safetensors.numpy import save_file

    save_file(state, str(path))
    return path


def _pth(path):
    import torch

    torch.save({k: torch.from_numpy(v) for k, v in STATE.items()}, path)
    return path


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


needs_safetensors = pytest.mark.skipif(importlib.util.find_spec("safetensors") is None,
                                       reason="safetensors not installed")
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="torch not installed")


def _write(name, data):
    def make(folder):
        (folder / name).write_bytes(data)
        return folder / name
    return make


CASES = {
    "empty_pth": (_write("w.pth", b""), "is empty"),
    "empty_safetensors": (_write("w.safetensors", b""), "is empty"),
    "garbage_safetensors": (_write("w.safetensors", b"\x00garbage" * 50),
                            "not a readable safetensors file"),
    "garbage_npz": (_write("w.npz", b"PK\x03\x04 not really"), "not a readable NumPy .npz file"),
    "garbage_pth": (_write("w.pth", b"\x80\x02 not a pickle" * 10), "w.pth"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_damaged_files_name_the_file(tmp_path, case):
    if "pth" in case and importlib.util.find_spec("torch") is None:
        pytest.skip("torch not installed")
    make, text = CASES[case]
    path = make(tmp_path)
    with pytest.raises(ValueError, match="weights: ") as info:
        read_state_dict(path)
    assert str(path) in str(info.value) and text in str(info.value), info.value


@needs_torch
def test_truncated_pth_names_the_file(tmp_path):
    path = _truncate(_pth(tmp_path / "w.pth"))
    with pytest.raises(ValueError, match=r"not a readable PyTorch state dict.*interrupted"):
        read_state_dict(path)


@needs_safetensors
def test_truncated_safetensors_names_the_file(tmp_path):
    path = _truncate(_safetensors(tmp_path / "w.safetensors"), 0.8)
    with pytest.raises(ValueError, match=r"w\.safetensors' is not a readable safetensors"):
        read_state_dict(path)


@needs_safetensors
def test_integer_weights_are_refused_not_cast(tmp_path):
    state = {**STATE, "conv1.weight": np.ones((4, 3, 3, 3), np.int8)}
    path = _safetensors(tmp_path / "q.safetensors", state)
    with pytest.raises(ValueError, match=r"conv1\.weight \(int8\).*float32/float16/bfloat16"):
        from_torchvision("resnet18", path)
