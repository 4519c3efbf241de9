"""`export_model`'s argument checks (all before any work) and multi-platform StableHLO."""

import importlib.util

import jax
import jax.numpy as jnp
import pytest
from export_helpers import make_model

import cnnjax.models as models
from cnnjax.export import available_formats, default_formats, export_model, parse_formats

SHAPE = (16, 16, 3)


@pytest.fixture(scope="module")
def tiny():
    return make_model("resnet_tiny", {}, SHAPE)


def test_formats_are_registered():
    assert available_formats() == ["onnx", "stablehlo", "torch"]
    assert parse_formats("stablehlo, onnx,stablehlo") == ("stablehlo", "onnx")
    assert parse_formats(["torch"]) == ("torch",)


@pytest.mark.parametrize("formats", ["", [], "stablehlo,,", "tflite", ["onnx", 3], 7])
def test_bad_formats(formats):
    with pytest.raises(ValueError, match="formats="):
        parse_formats(formats)


@pytest.mark.parametrize("shape", [(1, 16, 16, 3)[1:2], (16, 0, 3), (16.5, 16, 3), "16x16", None,
                                   (16, True, 3)])
def test_bad_input_shape(tiny, tmp_path, shape):
    model, variables = tiny
    with pytest.raises(ValueError, match="input_shape="):
        export_model(model, variables, input_shape=shape, output_dir=tmp_path)
    assert not list(tmp_path.iterdir())


def test_bad_model_variables_and_options(tiny, tmp_path):
    model, variables = tiny
    with pytest.raises(TypeError, match="model="):
        export_model(lambda x: x, variables, input_shape=SHAPE, output_dir=tmp_path)
    with pytest.raises(TypeError, match="variables="):
        export_model(model, variables["params"], input_shape=SHAPE, output_dir=tmp_path)
    with pytest.raises(ValueError, match="onnx_batch_size="):
        export_model(model, variables, input_shape=SHAPE, output_dir=tmp_path,
                     onnx_batch_size=0)
    with pytest.raises(TypeError, match="platforms="):
        export_model(model, variables, input_shape=SHAPE, output_dir=tmp_path, platforms="cpu")
    with pytest.raises(ValueError, match="unknown export format 'tflite'"):
        export_model(model, variables, input_shape=SHAPE, output_dir=tmp_path, formats="tflite")


def test_stablehlo_for_several_platforms(tiny, tmp_path):
    model, variables = tiny
    paths = export_model(model, variables, input_shape=SHAPE, output_dir=tmp_path,
                         platforms=("cpu", "cuda"))
    exp = jax.export.deserialize(bytearray(paths["stablehlo"].read_bytes()))
    assert exp.platforms == ("cpu", "cuda")
    x = jax.random.normal(jax.random.key(0), (3, *SHAPE))
    expected = model.apply(variables, x, train=False)
    assert jnp.allclose(exp.call(x), expected, atol=1e-5 * float(jnp.abs(expected).max()))


def test_default_formats_follow_the_model_and_the_installed_packages():
    has_onnx = importlib.util.find_spec("jax2onnx") is not None
    has_torch = importlib.util.find_spec("torch") is not None
    unet, resnet = models.create("unet_tiny"), models.create("resnet_tiny")
    assert default_formats(unet) == ("stablehlo", "onnx")[: 1 + has_onnx]
    torch_ok = has_torch and hasattr(models, "to_torchvision")
    assert ("torch" in default_formats(resnet)) == torch_ok
