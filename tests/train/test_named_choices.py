"""Optimizers and segmentation losses are registries: one decorated function adds one, its
name works in a config (checked when the config is prepared, listed in errors), and a loss
takes options in its spec ("dice(smooth=0.1)")."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnnjax.train import make_optimizer
from cnnjax.train.optimizers import OPTIMIZER_REGISTRY, OPTIMIZERS, register_optimizer
from cnnjax.train.runner.config import prepare_config
from cnnjax.train.schedules import make_schedule as train_schedule
from cnnjax.train.tasks import SEGMENTATION_LOSS_REGISTRY, parse_loss, segmentation
from cnnjax.train.tasks.losses import register_segmentation_loss


@pytest.fixture
def own_names():
    yield
    OPTIMIZER_REGISTRY._entries.pop("halved_sgd", None)
    SEGMENTATION_LOSS_REGISTRY._entries.pop("pixel_error", None)


def test_an_optimizer_is_one_function(own_names):
    @register_optimizer("halved_sgd")
    def halved_sgd(cfg, schedule):
        return [optax.sgd(lambda step: 0.5 * schedule(step))]

    assert "halved_sgd" in OPTIMIZERS
    prepare_config({"optimizer": {"name": "halved_sgd", "learning_rate": 0.2}})
    tx = make_optimizer({"name": "halved_sgd", "learning_rate": 0.2, "grad_clip_norm": 10.0})
    params = {"w": jnp.ones(3)}
    updates, _ = tx.update({"w": jnp.ones(3)}, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], -0.1)
    with pytest.raises(ValueError, match=r"config\.optimizer\.name.*halved_sgd"):
        prepare_config({"optimizer": {"name": "rmsprop"}})


def test_a_loss_term_with_an_option_is_one_function(own_names):
    @register_segmentation_loss("pixel_error")
    def pixel_error(logits, target, weights, valid, num_classes, scale=1.0):
        wrong = (jnp.argmax(logits, -1) != target).astype(jnp.float32)
        return scale * jnp.sum(weights * wrong), jnp.sum(weights)

    logits = jnp.zeros((1, 2, 2, 3)).at[0, 0, 0, 1].set(5.0)
    batch = {"mask": jnp.zeros((1, 2, 2), jnp.int32)}
    task = segmentation(3, loss="ce+pixel_error(scale=4.0)")
    terms = task.loss_terms(logits, batch)
    assert set(terms) == {"ce", "pixel_error"}
    np.testing.assert_allclose(terms["pixel_error"][0] / terms["pixel_error"][1], 4.0 * 0.25)
    config = prepare_config({"dataset": "shapes_seg",
                             "task": {"segmentation_loss": "pixel_error(scale=2)"}})
    assert config.task.segmentation_loss == "pixel_error(scale=2)"
    with pytest.raises(ValueError, match=r"segmentation_loss.*unknown option.*\['scale'\]"):
        prepare_config({"task": {"segmentation_loss": "pixel_error(gamma=2)"}})


def test_loss_spec_errors_name_the_term_and_the_choices():
    with pytest.raises(ValueError, match=r"unknown term 'focal'.*'ce', 'dice'"):
        parse_loss("ce+focal")
    with pytest.raises(ValueError, match="twice"):
        parse_loss("ce+ce")
    assert parse_loss("dice", {"dice": {"smooth": 0.5}}) == (("dice", {"smooth": 0.5}),)
    assert parse_loss("dice(smooth=0.1)", {"dice": {"smooth": 0.5}}) == (
        ("dice", {"smooth": 0.1}),)


def test_a_schedule_is_one_function_with_the_shared_warm_up():
    from cnnjax.train.schedules import SCHEDULE_REGISTRY, SCHEDULES, register_schedule

    @register_schedule("halving", needs_total=True)
    def halving(cfg, lr, warmup, total):
        return lambda step: lr * 0.5 ** (jnp.asarray(step) // (total // 2))

    try:
        assert "halving" in SCHEDULES
        sched = train_schedule({"name": "sgd", "learning_rate": 1.0, "schedule": "halving",
                                "warmup_steps": 2}, 8)
        np.testing.assert_allclose([float(sched(s)) for s in (0, 1, 2, 4, 7)],
                                   [0.0, 0.5, 1.0, 0.5, 0.5])
        with pytest.raises(ValueError, match=r"halving.*needs total_steps"):
            train_schedule({"name": "sgd", "learning_rate": 1.0, "schedule": "halving"})
    finally:
        SCHEDULE_REGISTRY._entries.pop("halving", None)
    with pytest.raises(ValueError, match=r"schedule='linear'; expected one of .*one_cycle"):
        train_schedule({"name": "sgd", "learning_rate": 1.0, "schedule": "linear"})


def test_classification_losses_are_terms_too():
    from cnnjax.train.tasks import CLASSIFICATION_LOSS_REGISTRY, classification
    from cnnjax.train.tasks.losses import register_classification_loss

    @register_classification_loss("half_ce")
    def half_ce(logits, targets, valid, scale=0.5):
        per = -jnp.sum(targets * jax.nn.log_softmax(logits, -1), -1)
        return scale * jnp.sum(valid * per), jnp.sum(valid)

    try:
        logits = jnp.asarray([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
        batch = {"label": jnp.asarray([0, 2])}
        plain = classification(label_smoothing=0.1).loss_terms(logits, batch)
        both = classification(label_smoothing=0.1, loss="ce+half_ce(scale=2.0)").loss_terms(
            logits, batch)
        assert sorted(both) == ["ce", "half_ce"]
        np.testing.assert_allclose(both["ce"][0], plain["ce"][0])  # smoothing still applies
        unsmoothed = classification().loss_terms(logits, batch)["ce"][0]
        np.testing.assert_allclose(both["half_ce"][0], 2.0 * unsmoothed, rtol=1e-6)
        with pytest.raises(ValueError, match=r"classification_loss.*unknown term 'focal'"):
            prepare_config({"task": {"classification_loss": "ce+focal"}})
    finally:
        CLASSIFICATION_LOSS_REGISTRY._entries.pop("half_ce", None)


def test_a_task_is_one_function_with_its_kind():
    from cnnjax.train.tasks import TASKS, classification, make_task, register_task
    from experiments.run_config import check_task

    @register_task("smoothed", "classification")
    def smoothed(task_config, info):
        return classification(label_smoothing=0.3)

    try:
        config = prepare_config({"task": {"name": "smoothed"}})
        task = make_task(config.task, None)
        logits, batch = jnp.zeros((1, 3)).at[0, 0].set(4.0), {"label": jnp.asarray([0])}
        expected = classification(label_smoothing=0.3).loss_terms(logits, batch)["ce"][0]
        np.testing.assert_allclose(task.loss_terms(logits, batch)["ce"][0], expected)
        check_task(config, "classification", "classify")
        with pytest.raises(ValueError, match=r"experiments\.classify"):
            check_task(config, "segmentation", "segment")
    finally:
        TASKS._entries.pop("smoothed", None)
    with pytest.raises(ValueError, match=r"config\.task\.name.*'binary'"):
        prepare_config({"task": {"name": "smoothed"}})


def test_a_norm_is_one_function_and_models_take_its_name():
    import flax.linen as nn

    from cnnjax import models
    from cnnjax.layers import NORM_REGISTRY, NORMS, register_norm

    assert tuple(NORMS)[:5] == ("batch", "group", "layer", "instance", "none")

    @register_norm("rms")
    def rms(options):
        return lambda **kw: nn.RMSNorm(epsilon=options.epsilon, **kw)

    try:
        model = models.create("resnet_tiny", num_classes=3, norm="rms")
        variables = model.init(jax.random.key(0), jnp.ones((1, 16, 16, 3)), train=False)
        assert "batch_stats" not in variables
        paths = [jax.tree_util.keystr(p) for p, _ in
                 jax.tree_util.tree_flatten_with_path(variables["params"])[0]]
        assert any("scale" in p for p in paths)
    finally:
        NORM_REGISTRY._entries.pop("rms", None)
    with pytest.raises(ValueError, match=r"norm must be one of .*got 'rms'"):
        models.create("resnet_tiny", num_classes=3, norm="rms")
