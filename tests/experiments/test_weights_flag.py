"""`--weights=ema|raw` of eval, predict and export on a tiny run trained with an EMA
(`config.ema_decay`): each evaluates exactly the weights it names, computed here straight
from the checkpoint's arrays with `model.apply`, and the two differ."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

from cnnjax import data
from cnnjax.train.runner.components import build
from cnnjax.train.runner.evaluation import load_config, restore
from cnnjax.train.runner.predict import preprocess
from experiments import classify
from experiments.export_mode import run_export

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "experiments" / "configs" / "tiny.py")
OPTIONS = {"num_examples": 64, "image_size": 16, "channels": 3}


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("ema") / "run"
    assert classify.main(["prog", f"--workdir={workdir}", f"--config={TINY}",
                          "--config.ema_decay=0.5", "--noplots"]) == 0
    return workdir


def _test_split() -> tuple[np.ndarray, np.ndarray]:
    source = data.get_source("shapes", "test", **OPTIONS)
    records = [source[i] for i in range(len(source))]
    return (np.stack([r["image"] for r in records]),
            np.asarray([r["label"] for r in records]))


def _direct_logits(workdir: Path, weights: str, images: np.ndarray) -> np.ndarray:
    """Logits of the latest checkpoint's `weights` ("ema" from `state.ema`, "raw" from
    `state.params`/`model_state`), by `model.apply` on preprocessed uint8 images."""
    c = build(load_config(workdir), open_data=False)
    state, _, _ = restore(c, workdir, "latest")
    variables = ({"params": state.ema["params"], **state.ema["model_state"]}
                 if weights == "ema" else {"params": state.params, **state.model_state})
    x = preprocess(images, c.info.mean, c.info.std)
    return np.asarray(c.model.apply(jax.device_get(variables), x, train=False))


def _eval(workdir: Path, *flags: str) -> dict:
    assert classify.main(["prog", f"--workdir={workdir}", "--mode=eval", "--checkpoint=latest",
                          "--split=test", "--noplots", *flags]) == 0
    name = {"--weights=raw": "raw"}.get(flags[0] if flags else "", "ema")
    return json.loads((workdir / f"eval_test_latest_{name}.json").read_text())


def test_eval_raw_and_ema_each_evaluate_their_own_weights(ema_run: Path):
    images, labels = _test_split()
    results = {}
    for weights in ("raw", "ema"):
        result = _eval(ema_run, f"--weights={weights}")
        assert result["weights"] == weights
        logits = _direct_logits(ema_run, weights, images)
        loss = float(np.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels)))
        assert result["loss"] == pytest.approx(loss, rel=1e-5)
        assert result["accuracy"] == pytest.approx(np.mean(logits.argmax(-1) == labels))
        results[weights] = result
    assert results["raw"]["loss"] != pytest.approx(results["ema"]["loss"], rel=1e-4)
    default = _eval(ema_run)
    assert default["weights"] == "ema" and default["loss"] == results["ema"]["loss"]


def test_training_validation_reports_the_ema_weights(ema_run: Path):
    summary = json.loads((ema_run / "summary.json").read_text())
    assert summary["test"]["loss"] == pytest.approx(_eval(ema_run)["loss"], rel=1e-6)


def test_predict_with_raw_and_ema_weights(ema_run: Path, tmp_path: Path):
    images, _ = _test_split()
    np.save(tmp_path / "images.npy", images)
    for weights in ("raw", "ema"):
        out = tmp_path / weights
        assert classify.main(["prog", f"--workdir={ema_run}", "--mode=predict",
                              "--checkpoint=latest", f"--weights={weights}",
                              f"--input={tmp_path / 'images.npy'}", f"--output={out}"]) == 0
        with (out / "predictions.csv").open() as f:
            probs = np.array([[float(v) for k, v in r.items() if k.startswith("p_")]
                              for r in csv.DictReader(f)])
        expected = jax.nn.softmax(_direct_logits(ema_run, weights, images))
        np.testing.assert_allclose(probs, expected, atol=2e-5)


def test_export_with_raw_and_ema_weights(ema_run: Path, tmp_path: Path):
    images, _ = _test_split()
    outputs = {}
    for weights in ("raw", "ema"):
        out = tmp_path / weights
        assert run_export(str(ema_run), "latest", "stablehlo", str(out), weights=weights) == 0
        assert json.loads((out / "export.json").read_text())["weights"] == weights
        exported = jax.export.deserialize(bytearray((out / "model.stablehlo").read_bytes()))
        c = build(load_config(ema_run), open_data=False)
        x = preprocess(images[:1], c.info.mean, c.info.std)
        outputs[weights] = np.asarray(exported.call(x))
        np.testing.assert_allclose(outputs[weights], _direct_logits(ema_run, weights, images[:1]),
                                   rtol=1e-5, atol=1e-5)
    assert not np.allclose(outputs["raw"], outputs["ema"])


def test_weights_ema_on_a_run_without_ema_is_a_usage_error(ema_run: Path, tmp_path: Path,
                                                           capsys):
    plain = tmp_path / "plain"
    shutil.copytree(ema_run, plain)
    config = json.loads((plain / "config.json").read_text())
    config["ema_decay"] = 0.0  # what a run without EMA saved (its checkpoints aside)
    (plain / "config.json").write_text(json.dumps(config))
    for mode in ("eval", "predict"):
        code = classify.main(["prog", f"--workdir={plain}", f"--mode={mode}", "--weights=ema",
                              f"--input={tmp_path}"])
        assert code == 2
        assert "--weights=ema, but this run was trained without an EMA" in capsys.readouterr().err
    assert run_export(str(plain), "latest", "stablehlo", str(tmp_path / "x"), weights="ema") == 2
    assert "trained without an EMA" in capsys.readouterr().err
    assert classify.main(["prog", f"--workdir={plain}", "--mode=eval", "--weights=best"]) == 2
    assert "--weights" in capsys.readouterr().err


def test_nnx_load_run_gives_the_chosen_weights(ema_run: Path):
    import cnnjax.nnx as cnnx

    images, _ = _test_split()
    c = build(load_config(ema_run), open_data=False)
    x = preprocess(images[:8], c.info.mean, c.info.std)
    for weights in ("raw", "ema"):
        model = cnnx.load_run(ema_run, "latest", weights)
        assert model.use_running_average  # eval mode
        np.testing.assert_array_equal(np.asarray(model(x)),
                                      _direct_logits(ema_run, weights, images[:8]))
    default = cnnx.load_run(ema_run, "latest")
    np.testing.assert_array_equal(np.asarray(default(x)),
                                  _direct_logits(ema_run, "ema", images[:8]))


def test_init_from_a_run_with_ema_loads_its_ema_and_restarts_the_average(ema_run: Path):
    from cnnjax.train.runner.config import prepare_config
    from cnnjax.train.runner.init_from import initialise

    config = load_config(ema_run)
    config.init_from = f"{ema_run}:latest"
    config.ema_decay = 0.9
    c = build(prepare_config(config), open_data=False)
    state = initialise(c, c.init_state(), resumed=False)
    source, _, _ = restore(c, ema_run, "latest")
    for got, want in ((state.params, source.ema["params"]),
                      (state.ema["params"], source.ema["params"]),
                      (state.ema["model_state"], source.ema["model_state"])):
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
