"""PyTorch export: a torchvision-layout state dict through `cnnjax.models.to_torchvision`.

The file loads with strict=True into torchvision's ResNet-18 (from torchvision where it
imports, else the reference module of tests/models written with torchvision's module names)
and gives cnnjax's logits."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from export_helpers import make_model

import cnnjax.models as models
from cnnjax.export import ExportError, export_model

torch = pytest.importorskip("torch")


def _load_torch_reference():
    """tests/models/torch_reference.py, by path (that folder is not a package)."""
    path = Path(__file__).resolve().parents[1] / "models" / "torch_reference.py"
    spec = importlib.util.spec_from_file_location("torch_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


torch_reference = _load_torch_reference()


def test_torch_format_without_to_torchvision_says_so(tmp_path, monkeypatch):
    monkeypatch.delattr(models, "to_torchvision", raising=False)
    model, variables = make_model("resnet_tiny", {}, (16, 16, 3))
    with pytest.raises(ExportError, match=r"cnnjax\.models\.to_torchvision"):
        export_model(model, variables, input_shape=(16, 16, 3), output_dir=tmp_path,
                     formats=["torch"])


def test_state_dict_loads_into_torchvision_and_gives_the_same_logits(tmp_path):
    shape = (32, 32, 3)
    model, variables = make_model("resnet18", {}, shape)
    paths = export_model(model, variables, input_shape=shape, output_dir=tmp_path,
                         formats=["torch"], name="resnet18")
    state = torch.load(paths["torch"], weights_only=True)
    expected_state = models.to_torchvision(model, variables)
    assert set(state) == set(expected_state)
    for key, value in expected_state.items():
        np.testing.assert_array_equal(state[key].numpy(), np.asarray(value), err_msg=key)
    info = json.loads(paths["export.json"].read_text())["artifacts"]["torch"]
    assert info["num_tensors"] == len(expected_state)
    net = torch_reference.reference_model("resnet18", num_classes=3)
    net.load_state_dict(state, strict=True)
    net.eval()
    x = np.random.default_rng(0).standard_normal((2, *shape), dtype=np.float32)
    expected = np.asarray(model.apply(variables, x, train=False))
    with torch.no_grad():
        actual = net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-4 * np.abs(expected).max())
