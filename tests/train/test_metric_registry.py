"""The metrics registry (`config.metrics`): every registered metric against a NumPy closed
form (loops over examples and pixels), exact over batch splits, the default rows unchanged,
config checks that list the choices, and a metric of one's own in one file."""

from __future__ import annotations

import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import train
from cnnjax.train.runner.config import resolve_config, validate_config
from cnnjax.train.tasks import METRIC_REGISTRIES, make_task

K = 7


def finalize(task, logits, batch, splits=1):
    """The task's metrics of `batch`, summed over `splits` parts as the loop does."""
    total = None
    for part in np.array_split(np.arange(len(logits)), splits):
        sub = {k: v[part] for k, v in batch.items()}
        total = train.merge_metrics(total, task.metrics(jnp.asarray(logits[part]), sub))
    return task.finalize(total)


@pytest.fixture
def cls_batch():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(41, K)).astype(np.float32)
    labels = rng.integers(0, K - 1, 41).astype(np.int32)  # class K-1 never occurs
    valid = (rng.random(41) > 0.2).astype(np.float32)
    return logits, {"label": labels, "valid": valid}


def np_classification(logits, labels, valid, k):
    """accuracy, top-k accuracy and balanced accuracy by loops over the valid examples."""
    rows = [i for i in range(len(labels)) if valid[i]]
    acc = sum(int(np.argmax(logits[i]) == labels[i]) for i in rows) / len(rows)
    topk = sum(int(labels[i] in np.argsort(-logits[i])[:k]) for i in rows) / len(rows)
    recalls = []
    for c in range(logits.shape[1]):
        of_c = [i for i in rows if labels[i] == c]
        if of_c:
            recalls.append(sum(int(np.argmax(logits[i]) == c) for i in of_c) / len(of_c))
    return acc, topk, float(np.mean(recalls))


@pytest.mark.parametrize("splits", [1, 3])
def test_classification_metrics_match_numpy(cls_batch, splits):
    logits, batch = cls_batch
    task = train.classification(metrics=("accuracy", "top5_accuracy", "top_k_accuracy(k=3)",
                                         "balanced_accuracy"))
    out = finalize(task, logits, batch, splits)
    acc, top5, balanced = np_classification(logits, batch["label"], batch["valid"], 5)
    top3 = np_classification(logits, batch["label"], batch["valid"], 3)[1]
    assert list(out) == ["accuracy", "top5_accuracy", "top3_accuracy", "balanced_accuracy"]
    assert out["accuracy"] == pytest.approx(acc, abs=1e-12)
    assert out["top5_accuracy"] == pytest.approx(top5, abs=1e-12)
    assert out["top3_accuracy"] == pytest.approx(top3, abs=1e-12)
    assert out["balanced_accuracy"] == pytest.approx(balanced, abs=1e-12)
    assert balanced != pytest.approx(acc)  # the test can tell them apart


def test_classification_default_is_accuracy_and_top5_when_more_than_5_classes(cls_batch):
    logits, batch = cls_batch
    assert list(finalize(train.classification(), logits, batch)) == ["accuracy",
                                                                     "top5_accuracy"]
    few = logits[:, :4]
    batch4 = {**batch, "label": batch["label"] % 4}
    assert list(finalize(train.classification(), few, batch4)) == ["accuracy"]
    out = finalize(train.classification(metrics=("top_k_accuracy(k=9)",)), few, batch4)
    assert out == {"top9_accuracy": 1.0}  # k >= K: every label is in the top k


def test_binary_metrics_match_numpy():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(23, 4)).astype(np.float32)
    labels = (rng.random((23, 4)) > 0.5).astype(np.float32)
    valid = (rng.random(23) > 0.3).astype(np.float32)
    out = finalize(train.binary(), logits, {"label": labels, "valid": valid}, 2)
    rows = [i for i in range(23) if valid[i]]
    right = [[(logits[i, j] > 0) == (labels[i, j] > 0.5) for j in range(4)] for i in rows]
    assert list(out) == ["accuracy", "exact_match"]
    assert out["accuracy"] == pytest.approx(np.mean(right), abs=1e-12)
    assert out["exact_match"] == pytest.approx(np.mean([all(r) for r in right]), abs=1e-12)


def np_segmentation(logits, mask, valid, ignore, c):
    """Per-class IoU/Dice, pixel accuracy and frequency-weighted IoU by loops over pixels."""
    pred = np.argmax(logits, -1)
    tp, true_n, pred_n = np.zeros(c), np.zeros(c), np.zeros(c)
    for idx in np.ndindex(mask.shape):
        if not valid[idx[0]] or mask[idx] == ignore:
            continue
        true_n[mask[idx]] += 1
        pred_n[pred[idx]] += 1
        tp[mask[idx]] += pred[idx] == mask[idx]
    union = true_n + pred_n - tp
    iou = [tp[k] / union[k] if union[k] else np.nan for k in range(c)]
    dice = [2 * tp[k] / (true_n[k] + pred_n[k]) if union[k] else np.nan for k in range(c)]
    fw = sum(true_n[k] / true_n.sum() * (tp[k] / union[k] if union[k] else 0) for k in range(c))
    return tp.sum() / true_n.sum(), iou, dice, fw


def test_segmentation_metrics_match_numpy():
    c, ignore = 4, 255
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(6, 5, 5, c)).astype(np.float32)
    mask = rng.integers(0, c - 1, (6, 5, 5)).astype(np.int32)  # class 3 never true
    mask[rng.random(mask.shape) < 0.1] = ignore
    valid = np.array([1, 1, 0, 1, 1, 1], np.float32)
    task = train.segmentation(c, ignore_label=ignore, metrics=(
        "pixel_accuracy", "mean_iou", "mean_dice", "frequency_weighted_iou"))
    out = finalize(task, logits, {"mask": mask, "valid": valid}, 2)
    pixel, iou, dice, fw = np_segmentation(logits, mask, valid, ignore, c)
    assert out["pixel_accuracy"] == pytest.approx(pixel, abs=1e-12)
    assert out["mean_iou"] == pytest.approx(np.nanmean(iou), abs=1e-12)
    assert out["mean_dice"] == pytest.approx(np.nanmean(dice), abs=1e-12)
    assert out["frequency_weighted_iou"] == pytest.approx(fw, abs=1e-12)
    for k in range(c):
        assert out[f"iou/{k}"] == pytest.approx(iou[k], abs=1e-12, nan_ok=True)
        assert out[f"dice/{k}"] == pytest.approx(dice[k], abs=1e-12, nan_ok=True)


def test_segmentation_default_rows_keep_their_order_and_a_choice_keeps_its_part():
    c = 3
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, 4, 4, c)).astype(np.float32)
    batch = {"mask": rng.integers(0, c, (2, 4, 4)).astype(np.int32)}
    out = finalize(train.segmentation(c), logits, batch)
    assert list(out) == ["pixel_accuracy", "mean_iou", "mean_dice",
                         "iou/0", "dice/0", "iou/1", "dice/1", "iou/2", "dice/2"]
    # what the task reported before metrics were registry entries: confusion_metrics(cm)
    cm = np.zeros((c, c), np.int64)
    np.add.at(cm, (batch["mask"].ravel(), np.argmax(logits, -1).ravel()), 1)
    before = train.confusion_metrics(cm)
    assert list(out) == list(before) and out == before
    only = finalize(train.segmentation(c, metrics=("mean_iou",)), logits, batch)
    assert list(only) == ["mean_iou", "iou/0", "iou/1", "iou/2"]
    assert only["mean_iou"] == out["mean_iou"]


def _prepared(**fields):
    validate_config(resolve_config({"num_train_steps": 2, **fields}), num_devices=1)


@pytest.mark.parametrize(("fields", "message"), [
    ({"metrics": ("accuracy", "mean_iuo")},
     "config.metrics: unknown metric 'mean_iuo'; expected names from (classification: "
     "accuracy, balanced_accuracy, top5_accuracy, top_k_accuracy; binary: accuracy, "
     "exact_match; segmentation: frequency_weighted_iou, mean_dice, mean_iou"),
    ({"metrics": ("top_k_accuracy(j=3)",)},
     "classification metric 'top_k_accuracy': unknown option(s) ['j']; it takes ['k']"),
    ({"metrics": ("accuracy", "accuracy")}, "names a metric twice"),
    ({"metrics": ("mean_iou",), "task": {"name": "classification"}},
     "unknown classification metric 'mean_iou'; expected names from ('accuracy', "
     "'balanced_accuracy', 'top5_accuracy', 'top_k_accuracy')"),
    ({"metrics": ()}, "expected a non-empty tuple of metric names"),
])
def test_bad_metrics_are_refused_when_the_config_is_prepared(fields, message):
    with pytest.raises(ValueError) as e:
        _prepared(**fields)
    assert message in str(e.value)


def test_the_task_kind_is_checked_when_the_task_is_built():
    config = resolve_config({"num_train_steps": 2, "metrics": ("accuracy",)})
    info = type("Info", (), {"task": "segmentation", "num_classes": 3})()
    with pytest.raises(ValueError, match=r"unknown segmentation metric 'accuracy'; expected "
                                         r"names from .*'pixel_accuracy'"):
        make_task(config.task, info, metrics=config.metrics)


def test_a_metric_of_ones_own_is_one_file(tmp_path):
    path = tmp_path / "my_metrics.py"
    path.write_text(textwrap.dedent('''
        import jax.numpy as jnp
        from cnnjax.train.tasks import register_metric

        @register_metric("mean_true_class_prob", "classification")
        def mean_true_class_prob(inputs, temperature=1.0):
            """Mean softmax probability of the true class."""
            p = jnp.exp(inputs.logits / temperature)
            p = p / p.sum(-1, keepdims=True)
            true = jnp.take_along_axis(p, inputs.target[:, None], -1)[:, 0]
            return {"mean_true_class_prob": ((inputs.weights * true).sum(),
                                             inputs.weights.sum())}
    '''))
    config = resolve_config({"imports": (str(path),), "num_train_steps": 2,
                             "metrics": ("accuracy", "mean_true_class_prob(temperature=2.0)")})
    validate_config(config, num_devices=1)
    info = type("Info", (), {"task": "classification", "num_classes": 3})()
    task = make_task(config.task, info, metrics=config.metrics)
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 4.0, 0.0]], np.float32)
    out = finalize(task, logits, {"label": np.array([0, 2], np.int32)})
    e = np.exp(logits / 2.0)
    expected = np.mean([e[0, 0] / e[0].sum(), e[1, 2] / e[1].sum()])
    assert out["accuracy"] == 0.5
    assert out["mean_true_class_prob"] == pytest.approx(expected, rel=1e-6)
    assert "mean_true_class_prob" in METRIC_REGISTRIES["classification"]


@pytest.mark.parametrize("strategy", ["jit", "shard_map", "pmap"])
def test_array_pairs_are_summed_over_devices_exactly(strategy):
    """balanced_accuracy's per-class (sum, count) arrays through an eval step on every
    device, with padding rows: the NumPy closed form of the model's own logits."""
    from cnnjax import models

    rng = np.random.default_rng(4)
    batch = {"image": rng.normal(size=(32, 8, 8, 3)).astype(np.float32),
             "label": rng.integers(0, 4, 32).astype(np.int32),
             "valid": (rng.random(32) > 0.25).astype(np.float32)}
    mesh = train.make_mesh()
    model = models.create("cnn2d", num_classes=4, widths=(8, 16))
    task = train.classification(metrics=("balanced_accuracy", "top_k_accuracy(k=2)"))
    tx = train.make_optimizer({"name": "adam", "learning_rate": 1e-2})
    state = train.create_train_state(model, tx, 0, (1, 8, 8, 3), mesh=mesh)
    evaluate = train.make_eval_step(model, task, strategy=strategy, mesh=mesh)
    out = task.finalize(train.merge_metrics(None, evaluate(state, batch)))
    logits = np.asarray(model.apply({"params": jax.device_get(state.params),
                                     **jax.device_get(dict(state.model_state or {}))},
                                    batch["image"], train=False), np.float64)
    _, top2, balanced = np_classification(logits, batch["label"], batch["valid"], 2)
    assert out["balanced_accuracy"] == pytest.approx(balanced, abs=1e-12)
    assert out["top2_accuracy"] == pytest.approx(top2, abs=1e-12)
