"""ONNX export (jax2onnx): onnxruntime gives cnnjax's outputs within 1e-4 of their scale for the
zoo models that convert; the ones that do not fail with an ExportError naming the op."""

import json

import numpy as np
import pytest
from export_helpers import make_model

from cnnjax.export import ExportError, ExportSpec, export_model, onnx_format

pytest.importorskip("jax2onnx")
ort = pytest.importorskip("onnxruntime")

# (registry name, create options, one example's shape): every family, tiny. The first two
# run in the fast suite; the rest are slow (each conversion takes ~10 s on 2 cores).
CONVERTS = [
    ("simple_cnn", {"widths": (4, 8, 8), "hidden": 16}, (28, 28, 1)),
    # ImageNet stem: its overlapping 3x3/2 max pool needs cnnjax.export.onnx_plugins.
    ("resnet_tiny", {"stem": "imagenet"}, (32, 32, 3)),
]
CONVERTS_SLOW = [
    ("unet_tiny", {}, (12, 16, 3)),
    ("resnet_tiny", {}, (16, 16, 3)),
    ("alexnet_tiny", {}, (63, 63, 3)),
    ("lenet5", {}, (32, 32, 1)),
    ("cnn1d", {"widths": (4, 8)}, (32, 2)),
    ("cnn2d", {"widths": (4, 8)}, (20, 20, 3)),
    ("vgg_tiny", {}, (32, 32, 3)),
    ("resnet_tiny", {"preactivation": True, "block": "bottleneck", "width": 4}, (16, 16, 3)),
    ("unet_tiny", {"padding": "valid", "norm": "instance"}, (20, 20, 1)),
    # Full size (the torchvision layout and the paper's U-Net, 'same' padding).
    ("resnet18", {}, (32, 32, 3)),
    ("unet", {}, (48, 40, 1)),
]
# (name, options, shape, text the error must contain): what does not convert, and why.
FAILS = [("cnn3d", {"widths": (4, 8), "norm": "group", "num_groups": 2}, (4, 4, 4, 1),
          "conv_general_dilated")]
FAILS_SLOW = [
    # jax2onnx 0.17.1 has no antialiased resize (Flax's upsampling by jax.image.resize).
    ("unet_tiny", {"upsample": "resize"}, (16, 16, 1), "jax.image.resize"),
]


def _check_parity(tmp_path, name, options, shape, batch):
    model, variables = make_model(name, options, shape)
    paths = export_model(model, variables, input_shape=shape, output_dir=tmp_path,
                         formats=["onnx"], name=name, onnx_batch_size=batch)
    x = np.random.default_rng(2).uniform(-2, 2, (batch, *shape)).astype(np.float32)
    expected = np.asarray(model.apply(variables, x, train=False))
    session = ort.InferenceSession(str(paths["onnx"]), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    (actual,) = session.run(None, {"input": x})
    assert actual.shape == expected.shape
    scale = np.abs(expected).max()
    assert scale > 0
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-4 * scale)
    info = json.loads(paths["export.json"].read_text())["artifacts"]["onnx"]
    assert info["checked_with_onnxruntime"] is True
    assert info["batch"] == f"fixed: {batch}"
    assert info["max_abs_error"] <= 1e-4 * info["output_scale"]


@pytest.mark.parametrize(("name", "options", "shape"), CONVERTS,
                         ids=[c[0] for c in CONVERTS])
def test_onnxruntime_matches_cnnjax(tmp_path, name, options, shape):
    _check_parity(tmp_path, name, options, shape, batch=2)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "options", "shape"), CONVERTS_SLOW,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CONVERTS_SLOW)])
def test_onnxruntime_matches_cnnjax_every_family(tmp_path, name, options, shape):
    _check_parity(tmp_path, name, options, shape, batch=1)


def _check_fails(tmp_path, name, options, shape, op):
    model, variables = make_model(name, options, shape)
    with pytest.raises(ExportError, match=op) as info:
        export_model(model, variables, input_shape=shape, output_dir=tmp_path,
                     formats=["onnx"], name=name)
    assert name in str(info.value)
    assert not (tmp_path / "model.onnx").exists()  # no unverified artifact left behind


@pytest.mark.parametrize(("name", "options", "shape", "op"), FAILS, ids=[f[0] for f in FAILS])
def test_unsupported_op_is_named(tmp_path, name, options, shape, op):
    _check_fails(tmp_path, name, options, shape, op)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "options", "shape", "op"), FAILS_SLOW,
                         ids=[f[0] for f in FAILS_SLOW])
def test_unsupported_op_is_named_slow(tmp_path, name, options, shape, op):
    _check_fails(tmp_path, name, options, shape, op)


def _spec():
    model, variables = make_model("simple_cnn", {"widths": (4, 4, 4), "hidden": 8}, (18, 18, 1))
    return ExportSpec(model, variables, (18, 18, 1), "simple_cnn")


def test_check_rejects_a_graph_that_disagrees(tmp_path, monkeypatch):
    spec = _spec()
    expected = np.asarray(spec.forward(spec.example_input(1)))
    monkeypatch.setattr(onnx_format, "run_onnx", lambda path, x: expected + 1e-3)
    with pytest.raises(ExportError, match="disagrees with JAX"):
        onnx_format._check(spec, tmp_path / "model.onnx")
    monkeypatch.setattr(onnx_format, "run_onnx", lambda path, x: expected + 1e-7)
    assert onnx_format._check(spec, tmp_path / "model.onnx")["checked_with_onnxruntime"]


def test_check_names_onnxruntimes_error(tmp_path, monkeypatch):
    def fail(path, x):
        raise RuntimeError("node_MaxPool_8: Unsupported pooling size")

    monkeypatch.setattr(onnx_format, "run_onnx", fail)
    with pytest.raises(ExportError, match=r"onnxruntime cannot run.*MaxPool"):
        onnx_format._check(_spec(), tmp_path / "model.onnx")
