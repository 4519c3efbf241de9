"""End-to-end tests of `experiments.classify` / `experiments.segment` on the tiny config.

Each entry point trains once per module (in-process through `main(argv)`, 8 CPU devices);
the tests then check the outputs, resume, eval and predict against independent paths
(the trainer's own test metrics vs. predictions recomputed from raw uint8 images).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnjax import data
from experiments import classify, segment

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "experiments" / "configs" / "tiny.py")
TINY_OPTIONS = {"num_examples": 64, "image_size": 16, "channels": 3}


def _rows(workdir: Path) -> list[dict]:
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def _train(module, workdir: Path, *extra: str) -> int:
    return module.main(["prog", f"--workdir={workdir}", *extra])


@pytest.fixture(scope="module")
def cls_first_rows(tmp_path_factory) -> tuple[Path, list[dict]]:
    """A classification run stopped at step 4, then the full command (6 steps) resumed."""
    workdir = tmp_path_factory.mktemp("cls")
    assert _train(classify, workdir, f"--config={TINY}", "--config.num_train_steps=4",
                  "--noplots") == 0
    first = _rows(workdir)
    assert _train(classify, workdir, f"--config={TINY}") == 0
    return workdir, first


@pytest.fixture(scope="module")
def cls_run(cls_first_rows) -> Path:
    return cls_first_rows[0]


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("seg")
    assert _train(segment, workdir, f"--config={TINY}:seg") == 0
    return workdir


# --------------------------------------------------------------------------- outputs


def _check_common_outputs(workdir: Path, metric: str, val_steps: list[int]) -> list[dict]:
    config = json.loads((workdir / "config.json").read_text())
    assert config["num_train_steps"] == 6 and config["batch_size"] == 16
    runs = json.loads((workdir / "run_metadata.json").read_text())["runs"]
    assert runs and "versions" in runs[0] and "git" in runs[0]
    rows = _rows(workdir)
    train = [r for r in rows if r["split"] == "train"]
    assert [r["step"] for r in train] == [2, 4, 6]
    for r in train:
        for key in ("epoch", "loss", metric, "learning_rate", "images_per_s"):
            assert isinstance(r[key], float), (key, r)
        assert r["epoch"] == pytest.approx(r["step"] / 4)  # 64 records / 16 per batch
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    assert [r["step"] for r in rows if r["split"] == "val"] == val_steps
    assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
    steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert steps and steps[-1] == 6
    for name in ("training_curves.png", "filters.png"):
        with Image.open(workdir / name) as im:
            assert im.size[0] > 100 and im.size[1] > 100
    return rows


def test_classify_writes_every_output(cls_run: Path):
    _check_common_outputs(cls_run, "accuracy", [3, 4, 6])  # 4: end of the first run
    assert (cls_run / "confusion_matrix_test.png").stat().st_size > 1000


def test_segment_writes_every_output(seg_run: Path):
    rows = _check_common_outputs(seg_run, "mean_iou", [3, 6])
    test = next(r for r in rows if r["split"] == "test")
    for key in ("mean_iou", "mean_dice", "pixel_accuracy"):
        assert 0.0 <= test[key] <= 1.0, (key, test)
    assert (seg_run / "segmentation_test.png").stat().st_size > 1000


# --------------------------------------------------------------------------- resume


def test_same_command_again_does_not_retrain(cls_run: Path, tmp_path: Path):
    before = (cls_run / "metrics.jsonl").read_text()
    assert _train(classify, cls_run, f"--config={TINY}", "--noplots") == 0
    assert (cls_run / "metrics.jsonl").read_text() == before


def test_longer_run_resumed_from_the_last_step(cls_first_rows):
    workdir, first = cls_first_rows
    rows = _rows(workdir)
    assert max(r["step"] for r in first) == 4
    assert rows[: len(first)] == first  # the first run's rows were kept, not rewritten
    train_steps = [r["step"] for r in rows if r["split"] == "train"]
    assert train_steps == [2, 4, 6]  # steps 1-4 were not trained again
    runs = json.loads((workdir / "run_metadata.json").read_text())["runs"]
    assert len(runs) >= 2  # one record per start (a later test may add one)


# --------------------------------------------------------------------------- eval


def test_eval_latest_matches_the_trainers_test_metrics(cls_run: Path):
    summary = json.loads((cls_run / "summary.json").read_text())
    assert classify.main(["prog", f"--workdir={cls_run}", "--mode=eval",
                          "--checkpoint=latest", "--split=test"]) == 0
    result = json.loads((cls_run / "eval_test_latest.json").read_text())
    assert result["step"] == 6
    assert result["accuracy"] == pytest.approx(summary["test"]["accuracy"], abs=1e-6)
    assert (cls_run / "confusion_matrix_test_step6.png").exists()


def test_eval_given_step(seg_run: Path):
    assert segment.main(["prog", f"--workdir={seg_run}", "--mode=eval", "--checkpoint=3",
                         "--split=val", "--noplots"]) == 0
    result = json.loads((seg_run / "eval_val_3.json").read_text())
    val3 = next(r for r in _rows(seg_run) if r["split"] == "val" and r["step"] == 3)
    assert result["step"] == 3
    assert result["mean_iou"] == pytest.approx(val3["mean_iou"], abs=1e-6)


# --------------------------------------------------------------------------- predict


def _test_records(name: str) -> tuple[np.ndarray, np.ndarray]:
    source = data.get_source(name, "test", **TINY_OPTIONS)
    records = [source[i] for i in range(len(source))]
    key = "label" if name == "shapes" else "mask"
    return np.stack([r["image"] for r in records]), np.stack([r[key] for r in records])


def test_predict_npy_probabilities_reproduce_test_accuracy(cls_run: Path, tmp_path: Path):
    images, labels = _test_records("shapes")
    np.save(tmp_path / "images.npy", images)
    out = tmp_path / "pred"
    assert classify.main(["prog", f"--workdir={cls_run}", "--mode=predict", "--checkpoint=latest",
                          f"--input={tmp_path / 'images.npy'}", f"--output={out}"]) == 0
    with (out / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(images)
    probs = np.array([[float(v) for k, v in r.items() if k.startswith("p_")] for r in rows])
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    predicted = np.array([int(r["prediction"]) for r in rows])
    np.testing.assert_array_equal(predicted, probs.argmax(1))
    summary = json.loads((cls_run / "summary.json").read_text())
    assert np.mean(predicted == labels) == pytest.approx(summary["test"]["accuracy"], abs=1e-6)
    js = json.loads((out / "predictions.json").read_text())
    assert [p["prediction"] for p in js["predictions"]] == predicted.tolist()


def test_predict_folder_of_pngs_equals_npy(cls_run: Path, tmp_path: Path):
    images, _ = _test_records("shapes")
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, img in enumerate(images[:5]):
        Image.fromarray(img).save(folder / f"img{i:02d}.png")
    np.save(tmp_path / "five.npy", images[:5])
    for inp, out in ((folder, "a"), (tmp_path / "five.npy", "b")):
        assert classify.main(["prog", f"--workdir={cls_run}", "--mode=predict",
                              f"--input={inp}", f"--output={tmp_path / out}"]) == 0
    a = json.loads((tmp_path / "a" / "predictions.json").read_text())["predictions"]
    b = json.loads((tmp_path / "b" / "predictions.json").read_text())["predictions"]
    assert [r["input"] for r in a] == [f"img{i:02d}.png" for i in range(5)]
    np.testing.assert_allclose([r["probabilities"] for r in a],
                               [r["probabilities"] for r in b], atol=1e-6)


def test_predict_masks_as_png(seg_run: Path, tmp_path: Path):
    images, masks = _test_records("shapes_seg")
    np.savez(tmp_path / "arr.npz", images=images[:3])
    out = tmp_path / "masks"
    assert segment.main(["prog", f"--workdir={seg_run}", "--mode=predict",
                         f"--input={tmp_path / 'arr.npz'}", f"--output={out}"]) == 0
    for i in range(3):
        with Image.open(out / f"{i}_mask.png") as im:
            m = np.asarray(im)
        assert m.shape == masks[i].shape and m.max() < 7
    assert (out / "overlays.png").exists()


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("--config.model=no_such_net", ["config.model", "no_such_net"]),
        ("--config.dataset=no_such_data", ["config.dataset", "no_such_data"]),
        ("--config.optimizer.name=adamqq", ["optimizer.name", "adamqq"]),
        ("--config.batch_size=12", ["batch_size=12", "divisible", "8 devices"]),
    ],
)
def test_bad_config_fails_fast(override: str, words: list[str], tmp_path: Path, capsys):
    workdir = tmp_path / "bad"
    assert classify.main(["prog", f"--workdir={workdir}", f"--config={TINY}", override]) == 1
    err = capsys.readouterr().err
    for w in words:
        assert w in err, err
    assert not (workdir / "checkpoints").exists()  # nothing was trained


def test_usage_errors(tmp_path: Path, capsys):
    assert classify.main(["prog", f"--config={TINY}"]) == 2  # no --workdir
    assert "--workdir" in capsys.readouterr().err
    assert classify.main(["prog", f"--workdir={tmp_path}", f"--config={TINY}",
                          "--config.optimizer.no_such_field=1"]) == 1
    assert "unknown config field 'optimizer.no_such_field'" in capsys.readouterr().err
    assert classify.main(["prog", f"--workdir={tmp_path}", f"--config={TINY}",
                          "--config.model_options.no_such_option=1"]) == 1
    assert "no_such_option" in capsys.readouterr().err
    assert classify.main(["prog", f"--workdir={tmp_path}", "--coordinator_address=h:1"]) == 2
    assert "--num_processes" in capsys.readouterr().err
    assert classify.main(["prog", f"--workdir={tmp_path}", "--mode=predict"]) == 2


def test_wrong_task_for_the_script(tmp_path: Path, capsys):
    assert classify.main(["prog", f"--workdir={tmp_path}", f"--config={TINY}:seg"]) == 1
    assert "experiments.segment" in capsys.readouterr().err


def test_cli_exit_code_and_message(tmp_path: Path):
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.classify", f"--workdir={tmp_path}",
         f"--config={TINY}", "--config.model=no_such_net"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1
    assert "no_such_net" in proc.stderr and "Traceback" not in proc.stderr
