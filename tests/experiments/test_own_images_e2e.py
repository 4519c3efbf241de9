"""Issue 22's "done when", in commands only (the README's, run as subprocesses): a folder of
300 PNGs in 3 classes, `resnet18` fine-tuned from a torchvision-layout `.pth`, evaluated,
a folder predicted, then exported (StableHLO, ONNX where jax2onnx and onnxruntime are
installed, torch) from a COPY of the workdir after the image folder is gone; the exported
StableHLO (and ONNX) give the classes that `--mode=predict` gave."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ("ants", "bees", "wasps")
CONFIG = str(ROOT / "experiments" / "configs" / "my_images.py")

pytestmark = pytest.mark.slow


def _pngs(root: Path, per_class: int, seed: int) -> None:
    """Class k: a bright square in corner k over noise; 24..40 pixels a side, RGB or grey."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            size = int(rng.integers(24, 41))
            x = rng.integers(0, 90, (size, size, 3), dtype=np.uint8)
            half = size // 2
            r0, c0 = [(0, 0), (0, half), (half, 0)][label]
            x[r0:r0 + half, c0:c0 + half] = 230
            image = Image.fromarray(x)
            (image.convert("L") if i % 5 == 0 else image).save(root / name / f"{i:03d}.png")


def _run(*args: str, cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CNNJAX_CACHE_DIR": str(cwd / "cache")}
    done = subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=1200)
    assert done.returncode == 0, f"{args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _pth(path: Path) -> None:
    """A torchvision-layout resnet18 state dict (random weights stand in for ImageNet's)."""
    torch = pytest.importorskip("torch")
    import jax
    import jax.numpy as jnp

    from cnnjax import models

    model = models.create("resnet18")
    variables = model.init(jax.random.key(1), jnp.zeros((1, 64, 64, 3)), train=False)
    state = models.to_torchvision(model, variables)
    torch.save({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, path)


def _exported_classes(export: Path, images: np.ndarray) -> dict[str, np.ndarray]:
    """argmax of the StableHLO (and ONNX) artifacts on images preprocessed from export.json."""
    import jax

    info = json.loads((export / "export.json").read_text())
    prep = info["preprocessing"]
    x = ((images / 255.0 - np.asarray(prep["mean"])) / np.asarray(prep["std"]))
    x = x.astype(np.float32)
    exp = jax.export.deserialize(bytearray((export / "model.stablehlo").read_bytes()))
    out = {"stablehlo": np.asarray(exp.call(x)).argmax(-1)}
    if (export / "model.onnx").exists():
        import onnxruntime

        session = onnxruntime.InferenceSession(str(export / "model.onnx"))
        name = session.get_inputs()[0].name
        out["onnx"] = np.concatenate([session.run(None, {name: x[i:i + 1]})[0]
                                      for i in range(len(x))]).argmax(-1)
    return out


def test_fine_tune_a_folder_of_pngs_then_export_without_it(tmp_path):
    images = tmp_path / "my_images"
    _pngs(images, per_class=100, seed=0)
    _pth(tmp_path / "resnet18.pth")
    inputs = tmp_path / "new_images"
    _pngs(inputs / "_", per_class=2, seed=1)
    flat = tmp_path / "to_predict"
    flat.mkdir()
    for p in sorted((inputs / "_").rglob("*.png")):
        shutil.copy(p, flat / f"{p.parent.name}_{p.name}")
    run = "runs/mine"
    _run("experiments.classify", f"--workdir={run}", f"--config={CONFIG}",
         f"--config.data_dir={images}", "--config.init_from=resnet18.pth",
         "--config.dataset_options.image_size=32", "--config.batch_size=16",
         "--config.num_epochs=2", "--noplots", cwd=tmp_path)
    config = json.loads((tmp_path / run / "config.json").read_text())
    assert config["dataset_info"]["class_names"] == list(CLASSES)
    out = _run("experiments.classify", f"--workdir={run}", "--mode=eval", "--noplots",
               cwd=tmp_path)
    assert json.loads(out.splitlines()[0])["accuracy"] >= 0.0
    _run("experiments.classify", f"--workdir={run}", "--mode=predict", f"--input={flat}",
         cwd=tmp_path)
    with (tmp_path / run / "predictions" / "predictions.csv").open() as f:
        predicted = {r["input"]: int(r["prediction"]) for r in csv.DictReader(f)}

    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(tmp_path / run, elsewhere / "mine")
    images.rename(tmp_path / "gone")  # the training data is not there any more
    formats = ["stablehlo", "torch"]
    if all(importlib.util.find_spec(m) for m in ("jax2onnx", "onnxruntime")):
        formats.append("onnx")
    _run("experiments.classify", "--workdir=mine", "--mode=export",
         f"--format={','.join(formats)}", "--output=export", cwd=elsewhere)
    export = elsewhere / "export"
    assert json.loads((export / "export.json").read_text())["class_names"] == list(CLASSES)
    assert (export / "model.pth").exists()
    names = sorted(predicted)
    batch = np.stack([np.asarray(Image.open(flat / n).convert("RGB").resize((32, 32),
                                                                            Image.BILINEAR))
                      for n in names]).astype(np.float32)
    classes = _exported_classes(export, batch)
    expected = np.asarray([predicted[n] for n in names])
    for fmt, got in classes.items():
        np.testing.assert_array_equal(got, expected, err_msg=fmt)
    if "onnx" in classes:
        np.testing.assert_array_equal(classes["onnx"], classes["stablehlo"])
