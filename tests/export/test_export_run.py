"""`export_run` on a real (tiny) training run: the artifact, its export.json (preprocessing,
classes, checkpoint) and the clear errors; the `--mode=export` wiring and its exit codes."""

import json
import shutil

import jax
import numpy as np
import pytest

from cnnjax.checkpoint import CheckpointManager
from cnnjax.data import get_source
from cnnjax.export import export_from_flags, export_run
from cnnjax.train.runner.evaluation import evaluate
from cnnjax.train.runner.loop import train_and_evaluate
from experiments.export_mode import main, run_export

CONFIG = {
    "seed": 0,
    "model": "simple_cnn",
    "model_options": {"widths": [4, 8, 8], "hidden": 16},
    "dataset": "shapes",
    "dataset_options": {"num_examples": 32, "image_size": 20},
    "batch_size": 16,
    "num_epochs": None,
    "num_train_steps": 4,
    "log_every_steps": 2,
    "eval_every_steps": 2,
    "checkpoint_every_steps": 2,
    "keep_checkpoints": 2,
    "keep_best": 2,
    "optimizer": {"name": "adamw", "learning_rate": 0.01},
    "augment": "",
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("export_run") / "run"
    summary = train_and_evaluate(CONFIG, workdir)
    assert summary["status"] == "completed"
    return workdir


def _artifact_accuracy(path, info, split):
    """Accuracy of the StableHLO artifact on raw uint8 images, preprocessed from export.json
    alone (no cnnjax pipeline): what a user of the artifact would do."""
    exp = jax.export.deserialize(bytearray(path.read_bytes()))
    prep = info["preprocessing"]
    source = get_source("shapes", split, **CONFIG["dataset_options"])
    records = [source[i] for i in range(len(source))]
    images = np.stack([r["image"] for r in records]).astype(np.float32)
    x = (images / 255.0 - np.asarray(prep["mean"])) / np.asarray(prep["std"])
    logits = np.asarray(exp.call(x.astype(np.float32)))
    labels = np.asarray([r["label"] for r in records])
    return float(np.mean(logits.argmax(-1) == labels))


def test_export_latest_matches_evaluate(run, tmp_path):
    paths = export_run(run, checkpoint="latest", formats="stablehlo", output_dir=tmp_path)
    info = json.loads(paths["export.json"].read_text())
    assert info["checkpoint"]["step"] == 4
    expected = evaluate(None, run, "val", 4)
    assert _artifact_accuracy(paths["stablehlo"], info, "val") == pytest.approx(
        expected["accuracy"], abs=1e-9)


def test_export_json_holds_what_the_artifact_needs(run, tmp_path):
    paths = export_run(run, checkpoint=2, formats=["stablehlo"], output_dir=tmp_path)
    info = json.loads(paths["export.json"].read_text())
    data = get_source("shapes", "train", **CONFIG["dataset_options"]).info
    assert info["preprocessing"]["mean"] == pytest.approx(list(data.mean))
    assert info["preprocessing"]["std"] == pytest.approx(list(data.std))
    assert info["class_names"] == list(data.class_names)
    assert info["num_classes"] == data.num_classes
    assert info["input"]["shape"] == [None, 20, 20, 3]
    assert info["model"]["name"] == "simple_cnn"
    assert info["model"]["create"] == {"name": "simple_cnn", "num_classes": data.num_classes,
                                       "widths": [4, 8, 8], "hidden": 16}
    assert info["checkpoint"]["step"] == 2
    assert info["checkpoint"]["requested"] == 2
    assert info["run"]["seed"] == 0
    assert "git" in info["run"]
    assert info["task"] == "classification"


def test_best_is_the_managers_best_step_and_default_folder(run):
    with CheckpointManager(run / "checkpoints", best_metric="accuracy", best_mode="max",
                           read_only=True) as ckpt:
        best = ckpt.best_step()
    paths = export_run(run, formats="stablehlo")
    assert paths["stablehlo"].parent == run / "export" / f"step_{best}"
    info = json.loads(paths["export.json"].read_text())
    assert info["checkpoint"]["step"] == best


def test_bad_format_names_the_choices(run):
    with pytest.raises(ValueError, match=r"unknown export format 'tflite'.*onnx.*stablehlo"):
        export_run(run, formats="stablehlo,tflite")


@pytest.mark.parametrize("checkpoint", ["first", -1, 2.5, True])
def test_bad_checkpoint_value(run, checkpoint):
    with pytest.raises(ValueError, match="checkpoint="):
        export_run(run, checkpoint=checkpoint, formats="stablehlo")


def test_missing_step_names_the_saved_ones(run):
    with pytest.raises(ValueError, match=r"step 3 is not in .*saved steps: \[2, 4\]"):
        export_run(run, checkpoint=3, formats="stablehlo")


def test_missing_workdir_and_missing_checkpoints(run, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_run(tmp_path / "nope", formats="stablehlo")
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        export_run(tmp_path, formats="stablehlo")
    untrained = tmp_path / "untrained"
    untrained.mkdir()
    shutil.copy(run / "config.json", untrained / "config.json")
    with pytest.raises(FileNotFoundError, match="no checkpoints"):
        export_run(untrained, formats="stablehlo")


def test_export_from_flags_writes_to_output(run, tmp_path):
    paths = export_from_flags(str(run), "latest", "stablehlo", str(tmp_path / "out"))
    assert set(paths) == {"stablehlo", "export.json"}
    assert paths["stablehlo"] == tmp_path / "out" / "model.stablehlo"
    assert paths["stablehlo"].stat().st_size > 0


def test_cli_exit_codes(run, tmp_path, capsys):
    assert run_export(str(run), "latest", "stablehlo,bogus") == 2
    err = capsys.readouterr().err
    assert "unknown export format 'bogus'" in err and "Traceback" not in err
    assert run_export(str(run), "newest", "stablehlo") == 2
    assert run_export(str(tmp_path / "missing"), "best", "stablehlo") == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
    code = main(["prog", f"--workdir={run}", "--checkpoint=latest", "--format=stablehlo",
                 f"--output={tmp_path / 'cli'}"])
    assert code == 0
    assert (tmp_path / "cli" / "model.stablehlo").exists()
    assert "wrote stablehlo" in capsys.readouterr().out
    assert main(["prog", "--checkpoint=latest"]) == 2  # --workdir missing
