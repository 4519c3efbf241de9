"""`cnnjax.train.runner.predict` against a direct `model.apply` and NumPy; experiment helpers."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from absl import flags

from cnnjax import data, models
from cnnjax.train import create_train_state, make_mesh, make_optimizer
from cnnjax.train.runner.predict import predict, preprocess
from cnnjax.viz.run_plots import first_conv_kernel
from experiments import common


@pytest.fixture(scope="module")
def classifier():
    model = models.create("cnn2d", num_classes=5, widths=(4, 8, 8))
    tx = make_optimizer({"name": "sgd", "learning_rate": 0.1})
    state = create_train_state(model, tx, 0, (1, 12, 12, 3), mesh=make_mesh(1))
    return model, state


def _reference(model, state, x):
    logits = model.apply({"params": state.params, **state.model_state}, x, train=False)
    return np.asarray(jax.nn.softmax(logits, -1))


@pytest.mark.parametrize("n", [1, 7, 21])
def test_predict_matches_apply_on_8_devices(classifier, n):
    model, state = classifier
    x = np.random.default_rng(n).normal(size=(n, 12, 12, 3)).astype(np.float32)
    got = predict(model, state, x, mesh=make_mesh(), batch_size=8)
    assert got.shape == (n, 5)
    np.testing.assert_allclose(got, _reference(model, state, x), rtol=1e-5, atol=1e-6)
    labels = predict(model, state, x, mesh=make_mesh(), batch_size=8, output="labels")
    np.testing.assert_array_equal(labels, got.argmax(-1))


def test_predict_segmentation_shape():
    model = models.create("unet_tiny", num_classes=3, base_features=4)
    tx = make_optimizer({"name": "sgd", "learning_rate": 0.1})
    state = create_train_state(model, tx, 0, (1, 16, 16, 1), mesh=make_mesh(1))
    x = np.random.default_rng(0).normal(size=(3, 16, 16, 1)).astype(np.float32)
    masks = predict(model, state, x, mesh=make_mesh(), batch_size=8, output="labels")
    assert masks.shape == (3, 16, 16) and masks.max() < 3
    ref = model.apply({"params": state.params, **state.model_state}, x, train=False)
    np.testing.assert_array_equal(masks, np.asarray(ref).argmax(-1))


def test_preprocess_is_the_pipelines_formula():
    source = data.get_source("shapes", "val", num_examples=16, image_size=16)
    raw = np.stack([source[i]["image"] for i in range(16)])
    batch = next(data.make_pipeline(source, batch_size=16, train=False))
    np.testing.assert_allclose(preprocess(raw, source.info.mean, source.info.std),
                               batch["image"], rtol=1e-6, atol=1e-6)
    manual = (raw / 255.0 - np.array(source.info.mean)) / np.array(source.info.std)
    np.testing.assert_allclose(preprocess(raw, source.info.mean, source.info.std), manual,
                               rtol=1e-5, atol=1e-5)


def test_predict_and_preprocess_reject_bad_input(classifier):
    model, state = classifier
    x = np.zeros((2, 12, 12, 3), np.float32)
    with pytest.raises(ValueError, match="output='proba'"):
        predict(model, state, x, output="proba")
    with pytest.raises(ValueError, match="batch_size=6 is not divisible by the 8 devices"):
        predict(model, state, x, mesh=make_mesh(), batch_size=6)
    with pytest.raises(ValueError, match="images is empty"):
        predict(model, state, x[:0])
    with pytest.raises(TypeError, match="state="):
        predict(model, object(), x)
    with pytest.raises(TypeError, match="dtype float32"):
        preprocess(x, (0.5,) * 3, (0.2,) * 3)
    with pytest.raises(ValueError, match="C = 1"):
        preprocess(np.zeros((2, 4, 4, 3), np.uint8), (0.5,), (0.2,))


def test_first_conv_kernel_follows_call_order():
    model = models.create("simple_cnn", num_classes=10)
    tx = make_optimizer({"name": "sgd", "learning_rate": 0.1})
    state = create_train_state(model, tx, 0, (1, 28, 28, 1), mesh=make_mesh(1))
    kernel = first_conv_kernel(model, state, (28, 28, 1))
    assert kernel.shape == (3, 3, 1, 32)
    np.testing.assert_array_equal(kernel, state.params["conv1"]["kernel"])


def _flags(*argv: str) -> flags.FlagValues:
    return common.parse(["prog", "--workdir=/tmp/x", *argv], common.CONFIG_DIR / "tiny.py")


def test_init_distributed_needs_all_three(monkeypatch):
    for name in (common.ENV_COORDINATOR, common.ENV_NUM_PROCESSES, common.ENV_PROCESS_ID):
        monkeypatch.delenv(name, raising=False)
    assert common.init_distributed(_flags()) is False  # single host: nothing to do
    with pytest.raises(common.UsageError, match="num_processes=None"):
        common.init_distributed(_flags("--coordinator_address=localhost:1234"))
    with pytest.raises(common.UsageError, match="process_id=3"):
        common.init_distributed(_flags("--coordinator_address=h:1", "--num_processes=2",
                                       "--process_id=3"))
    monkeypatch.setenv(common.ENV_NUM_PROCESSES, "two")
    with pytest.raises(common.UsageError, match="JAX_NUM_PROCESSES='two'"):
        common.init_distributed(_flags("--coordinator_address=h:1"))


def test_config_overrides_and_checkpoint_names():
    fv = _flags("--config.optimizer.learning_rate=0.5", "--config.batch_size=32")
    assert fv.config.optimizer.learning_rate == 0.5 and fv.config.batch_size == 32
    assert common.which_checkpoint("best") == "best"
    assert common.which_checkpoint("12") == 12
    with pytest.raises(common.UsageError, match="--checkpoint='last'"):
        common.which_checkpoint("last")
