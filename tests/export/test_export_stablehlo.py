"""StableHLO export: the artifact runs in a Python that cannot import cnnjax, with a symbolic
batch, and gives cnnjax's own eval-mode outputs; export.json describes it."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from export_helpers import make_model

from cnnjax.export import export_model

# name -> (create options, one example's shape); a classifier, a ResNet and a U-Net.
MODELS = {
    "simple_cnn": ({"widths": (4, 8, 8), "hidden": 16}, (28, 28, 1)),
    "resnet_tiny": ({}, (16, 16, 3)),
    "unet_tiny": ({}, (12, 16, 3)),
}
BATCHES = (1, 5)

# Runs in a fresh interpreter: `-I` (no PYTHONPATH, no cwd, no user site) and a finder that
# refuses cnnjax, since the venv may hold an editable install of it.
RUNNER = textwrap.dedent(
    """
    import importlib.abc, json, sys
    import numpy as np

    class NoCnnjax(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "cnnjax" or name.startswith("cnnjax."):
                raise ImportError("cnnjax is hidden from this interpreter")
            return None

    sys.meta_path.insert(0, NoCnnjax())
    try:
        import cnnjax  # noqa: F401
        print(json.dumps({"cnnjax_importable": True}))
        sys.exit(3)
    except ImportError:
        pass
    import jax

    inputs = np.load(sys.argv[1])
    out, avals = {}, {}
    for key in inputs.files:
        name = key.rsplit("_b", 1)[0]
        with open(f"{name}/model.stablehlo", "rb") as f:
            exp = jax.export.deserialize(bytearray(f.read()))
        out[key] = np.asarray(exp.call(inputs[key]))
        avals[name] = str(exp.in_avals[0])
    np.savez(sys.argv[2], **out)
    print(json.dumps({"cnnjax_importable": False, "avals": avals,
                      "loaded": sorted(m for m in sys.modules if m.startswith("cnnjax"))}))
    """
)


def _create(name):
    options, shape = MODELS[name]
    return (*make_model(name, options, shape, seed=1), shape)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Every model exported, its inputs, cnnjax's outputs and the isolated run's outputs."""
    root = tmp_path_factory.mktemp("stablehlo")
    inputs, expected, info = {}, {}, {}
    rng = np.random.default_rng(0)
    for name in MODELS:
        model, variables, shape = _create(name)
        paths = export_model(model, variables, input_shape=shape, output_dir=root / name,
                             formats=["stablehlo"], name=name)
        info[name] = json.loads(paths["export.json"].read_text())
        for b in BATCHES:
            x = rng.standard_normal((b, *shape)).astype(np.float32)
            inputs[f"{name}_b{b}"] = x
            expected[f"{name}_b{b}"] = np.asarray(model.apply(variables, x, train=False))
    np.savez(root / "inputs.npz", **inputs)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
    result = subprocess.run(
        [sys.executable, "-I", "-c", RUNNER, "inputs.npz", "outputs.npz"],
        cwd=root, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    outputs = dict(np.load(root / "outputs.npz"))
    return {"expected": expected, "outputs": outputs, "report": report, "info": info}


def test_isolated_interpreter_cannot_import_cnnjax(exported):
    assert exported["report"]["cnnjax_importable"] is False
    assert exported["report"]["loaded"] == []


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("name", list(MODELS))
def test_artifact_gives_cnnjax_outputs_without_cnnjax(exported, name, batch):
    key = f"{name}_b{batch}"
    expected, actual = exported["expected"][key], exported["outputs"][key]
    assert actual.shape == expected.shape
    assert actual.shape[0] == batch
    scale = np.abs(expected).max()
    assert scale > 0
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("name", list(MODELS))
def test_batch_dimension_is_symbolic(exported, name):
    _, shape = MODELS[name]
    aval = exported["report"]["avals"][name]
    assert aval == f"float32[b,{','.join(map(str, shape))}]"


def test_export_json_describes_the_artifact(exported):
    info = exported["info"]["unet_tiny"]
    assert info["model"]["name"] == "unet_tiny"
    assert info["model"]["class"] == "UNet"
    assert info["model"]["fields"]["num_classes"] == 3
    assert info["input"] == {"shape": [None, 12, 16, 3], "dtype": "float32",
                             "layout": "channels-last: (batch, *spatial, channels)"}
    assert info["output"]["shape"] == [None, 12, 16, 3]  # per-pixel logits
    assert info["artifacts"]["stablehlo"]["file"] == "model.stablehlo"
    assert exported["info"]["simple_cnn"]["output"]["shape"] == [None, 3]
