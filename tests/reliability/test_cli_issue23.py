"""The CLI under the bad inputs of issue 23 (items 5, 8, 9, 10, 14, 16): one line naming what
and where, exit 1 (failed run) or 2 (usage), no traceback, nothing saved lost. In-process
through `experiments.classify.main`; the eval/predict cases share one tiny trained workdir."""

from __future__ import annotations

import json
import logging
import shutil
import struct
import zipfile
import zlib

import numpy as np
import pytest
from conftest import TINY, cli
from PIL import Image

from cnnjax.train.runner import predict_io
from experiments import segment

# --------------------------------------------------------------------------- item 8


def test_onednn_switch_neither_on_nor_off_is_refused(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("CNNJAX_ONEDNN", "disabled")
    workdir = tmp_path / "w"
    code, _, err = cli(capfd, f"--workdir={workdir}", f"--config={TINY}", "--noplots")
    assert code == 1 and "Traceback" not in err, err
    assert "CNNJAX_ONEDNN='disabled'" in err and "0/false/off/no" in err
    assert not workdir.exists()


def test_onednn_switch_is_recorded_and_a_change_on_resume_is_warned(trained_copy, capfd,
                                                                     monkeypatch, caplog):
    runs = json.loads((trained_copy / "run_metadata.json").read_text())["runs"]
    assert runs[-1]["cpu_kernels"]["onednn"] is True
    monkeypatch.setenv("CNNJAX_ONEDNN", "off")
    with caplog.at_level(logging.WARNING, logger="cnnjax.checkpoint"):
        code, _, err = cli(capfd, f"--workdir={trained_copy}", f"--config={TINY}", "--noplots",
                           "--config.num_train_steps=7")
    assert code == 0, err
    runs = json.loads((trained_copy / "run_metadata.json").read_text())["runs"]
    assert runs[-1]["cpu_kernels"] == {"CNNJAX_ONEDNN": "off", "onednn": False}
    warned = [r.getMessage() for r in caplog.records if "oneDNN convolutions are off" in
              r.getMessage()]
    assert len(warned) == 1 and "will not match" in warned[0], caplog.text


# --------------------------------------------------------------------------- item 10


@pytest.mark.parametrize("seed", [str(2**63), str(2**64 + 5)])
def test_seed_that_does_not_fit_is_refused_before_any_work(tmp_path, capfd, seed):
    """It gave two tracebacks and left an empty workdir."""
    workdir = tmp_path / "w"
    code, _, err = cli(capfd, f"--workdir={workdir}", f"--config={TINY}", "--noplots",
                       f"--config.seed={seed}")
    assert code in (1, 2) and "Traceback" not in err, err
    assert "seed" in err and seed in err and len(err.strip().splitlines()) == 1, err
    assert not workdir.exists()


def test_sweep_seeds_must_fit(tmp_path, capsys):
    from experiments import sweep

    code = sweep.main(["sweep", f"--workdir={tmp_path}", f"--config={TINY}",
                       f"--seeds=0,{2**63}", "--dry-run"])
    assert code == 2 and "0..2**63-1" in capsys.readouterr().err


# --------------------------------------------------------------------------- item 6


@pytest.mark.parametrize("name, data", [("w.pth", b""), ("w.safetensors", b"\x00junk" * 9)])
def test_damaged_init_from_file_is_one_line_naming_it(tmp_path, capfd, name, data):
    weights = tmp_path / name
    weights.write_bytes(data)
    workdir = tmp_path / "w"
    code, _, err = cli(capfd, f"--workdir={workdir}", f"--config={TINY}", "--noplots",
                       f"--config.init_from={weights}")
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert str(weights) in err
    assert not workdir.exists() or not any(p.is_file() for p in workdir.rglob("*"))


# --------------------------------------------------------------------------- item 9


@pytest.mark.parametrize("mode", ["eval", "predict"])
def test_eval_predict_without_config_json_is_refused(trained_copy, tmp_path, capfd, mode):
    """It fell back to the default config (another model: a 91-line mismatch)."""
    (trained_copy / "config.json").unlink()
    extra = [f"--input={tmp_path / 'x.npy'}"] if mode == "predict" else []
    code, _, err = cli(capfd, f"--workdir={trained_copy}", f"--mode={mode}", "--noplots",
                       *extra)
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"{trained_copy / 'config.json'} not found" in err and "--config=FILE" in err


@pytest.mark.parametrize("content, text", [
    (b'{"model": "simple_cnn",', "is not valid JSON (Expecting"),
    (b"\xff\xfe{}", "is not UTF-8 text"),
    (b"[1, 2]", "holds a JSON list, not a config object"),
])
def test_garbage_config_json_names_the_file(trained_copy, capfd, content, text):
    (trained_copy / "config.json").write_bytes(content)
    code, _, err = cli(capfd, f"--workdir={trained_copy}", "--mode=eval", "--noplots")
    assert code == 1 and "Traceback" not in err, err
    assert str(trained_copy / "config.json") in err and text in err


# --------------------------------------------------------------------------- items 5, 14, 16


def _png_claiming(path, width, height):
    """A small PNG whose header claims width x height (a decompression bomb's header)."""
    Image.new("L", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr:ihdr + 17]))
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))
    return path


def _npy_bytes(header_shape, dtype="<u1", payload=b"\0" * 16):
    header = repr({"descr": dtype, "fortran_order": False, "shape": header_shape}).encode()
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + payload


def _bad_input(tmp_path, kind):
    if kind == "bomb_png":  # 14000^2: PIL's DecompressionBombError traceback before
        folder = tmp_path / "imgs"
        folder.mkdir()
        path = _png_claiming(folder / "big.png", 14000, 14000)
        return folder, "big.png' is too large to decode (Image size (196000000 pixels)"
    if kind == "large_png":  # under PIL's own limit, over cnnjax's
        folder = tmp_path / "imgs"
        folder.mkdir()
        path = _png_claiming(folder / "large.png", 9000, 9000)
        return folder, "large.png' is 9000x9000"
    if kind == "npz_huge_header":  # _ArrayMemoryError traceback before
        path = tmp_path / "huge.npz"
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("images.npy", _npy_bytes((1000000, 1000000, 3)))
        return path, "GiB, over the 8 GiB limit"
    if kind == "npz_truncated_header":
        path = tmp_path / "cut.npz"
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("images.npy", _npy_bytes((4, 16, 16, 3)))
        return path, "claims shape (4, 16, 16, 3)"
    if kind == "npz_not_zip":
        path = tmp_path / "junk.npz"
        path.write_bytes(b"not a zip file at all")
        return path, "is not a readable NumPy .npz file"
    if kind == "npy_not_numpy":  # NumPy's "load it unsafely using allow_pickle=" before
        path = tmp_path / "text.npy"
        path.write_text("just some text, not an array\n")
        return path, "is not a NumPy .npy array"
    if kind == "npy_pickled_objects":
        path = tmp_path / "objects.npy"
        np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
        return path, "holds Python objects"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["bomb_png", "large_png", "npz_huge_header",
                                  "npz_truncated_header", "npz_not_zip", "npy_not_numpy",
                                  "npy_pickled_objects"])
def test_predict_inputs_that_would_crash_or_exhaust_memory(kind, trained, tmp_path, capfd):
    path, text = _bad_input(tmp_path, kind)
    code, _, err = cli(capfd, f"--workdir={trained}", "--mode=predict", f"--input={path}",
                       f"--output={tmp_path / 'out'}", "--noplots")
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert text in err and str(path) in err and "allow_pickle" not in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # trains a tiny segmentation run (about 20 s)
def test_huge_segmentation_input_is_refused_before_the_model(tmp_path, capfd, monkeypatch):
    """A 12000^2 segmentation input was OOM-killed at 23 GB (it runs at full size); the same
    rule, at a limit lowered for the test, refuses it before any work."""
    workdir = tmp_path / "seg"
    code, _, err = cli(capfd, f"--workdir={workdir}", f"--config={TINY}:seg", "--noplots",
                       "--config.num_train_steps=2", module=segment)
    assert code == 0, err
    monkeypatch.setattr(predict_io, "MAX_SEGMENT_PIXELS", 40 * 40)
    images = np.zeros((1, 48, 48, 3), np.uint8)
    np.save(tmp_path / "x.npy", images)
    code, _, err = cli(capfd, f"--workdir={workdir}", "--mode=predict",
                       f"--input={tmp_path / 'x.npy'}", f"--output={tmp_path / 'out'}",
                       "--noplots", module=segment)
    assert code == 1 and "Traceback" not in err, err
    assert "2304 pixels" in err and "tile it" in err
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- item 13


def test_resume_over_damaged_metrics_rows_keeps_them_aside(trained_copy, capfd, caplog):
    path = trained_copy / "metrics.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    damaged = b"".join([lines[0], b'{"step": 1, "bad": "\xff"}\n', b"[1, 2]\n", *lines[1:]])
    path.write_bytes(damaged)
    with caplog.at_level(logging.WARNING, logger="cnnjax.train"):
        code, _, err = cli(capfd, f"--workdir={trained_copy}", f"--config={TINY}",
                           "--noplots", "--config.num_train_steps=7")
    assert code == 0 and "Traceback" not in err, err
    (backup,) = trained_copy.glob("metrics.jsonl.damaged-*")
    assert backup.read_bytes() == damaged
    assert "line 2: not UTF-8" in caplog.text and "line 3: a JSON list" in caplog.text
    assert b"\xff" not in path.read_bytes()
    assert max(json.loads(x)["step"] for x in path.read_text().splitlines()) == 7


# --------------------------------------------------------------------------- item 7


def _rotated_while_read(monkeypatch, workdir, step):
    """The running job deletes `step` (keep_checkpoints) just as this process reads it: Orbax
    fails on the vanished files."""
    from cnnjax.checkpoint import manager

    real = manager.CheckpointManager._restore_step

    def restore_step(self, candidate, abstract):
        if candidate == step and (workdir / "checkpoints" / str(step)).exists():
            shutil.rmtree(workdir / "checkpoints" / str(step))
            raise manager.CorruptCheckpointError("FileNotFoundError: .../array_metadatas")
        return real(self, candidate, abstract)

    monkeypatch.setattr(manager.CheckpointManager, "_restore_step", restore_step)


def test_eval_of_a_checkpoint_rotated_away_is_not_called_corrupt(trained_copy, capfd,
                                                                  monkeypatch, caplog):
    _rotated_while_read(monkeypatch, trained_copy, 6)
    with caplog.at_level(logging.WARNING, logger="cnnjax.checkpoint"):
        code, out, err = cli(capfd, f"--workdir={trained_copy}", "--mode=eval",
                             "--checkpoint=latest", "--noplots")
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-2])["step"] == 3  # the current latest
    assert "corrupt" not in caplog.text + err
    assert "removed by the running job while it was being read" in caplog.text
    assert not (trained_copy / "corrupt_checkpoints").exists()


def test_eval_of_a_given_step_rotated_away_says_so(trained_copy, capfd, monkeypatch):
    _rotated_while_read(monkeypatch, trained_copy, 6)
    code, _, err = cli(capfd, f"--workdir={trained_copy}", "--mode=eval", "--checkpoint=6",
                       "--noplots")
    assert code == 1 and "Traceback" not in err and "corrupt" not in err, err
    assert "step 6" in err and "removed by the running job" in err and "[3]" in err


# --------------------------------------------------------------------------- "Also"


def test_a_bug_still_takes_back_the_empty_workdir(tmp_path, capfd, monkeypatch):
    """Uncaught exceptions (bugs: a traceback is right) left empty workdirs behind."""
    from cnnjax.train.runner import loop

    def boom(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(loop, "_loop", boom)
    workdir = tmp_path / "w"
    with pytest.raises(RuntimeError, match="a bug"):
        cli(capfd, f"--workdir={workdir}", f"--config={TINY}", "--noplots")
    assert not workdir.exists()


# --------------------------------------------------------------------------- the new probes
# A second round over the paths added since (export, sweep, init_from, predict): each of these
# gave a traceback, a silent change or a two-line message before.


def test_export_output_inside_a_file_and_ctrl_c(trained, tmp_path, capfd, monkeypatch):
    from cnnjax.export import core
    from experiments import export_mode

    (tmp_path / "afile").write_text("x")
    code = export_mode.main(["prog", f"--workdir={trained}", f"--output={tmp_path / 'afile/x'}"])
    err = capfd.readouterr().err
    assert code == 1 and "Traceback" not in err and "is inside" in err, err

    out = tmp_path / "export"
    assert export_mode.main(["prog", f"--workdir={trained}", f"--output={out}"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(core, "_write_all", interrupted)
    capfd.readouterr()
    code = export_mode.main(["prog", f"--workdir={trained}", f"--output={out}"])
    err = capfd.readouterr().err
    assert code == 130 and "Traceback" not in err and "left as it was" in err, err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "export"]


def test_corrupt_given_step_is_one_line(trained_copy, capfd):
    (trained_copy / "checkpoints" / "6" / "state" / "_METADATA").unlink()
    code, _, err = cli(capfd, f"--workdir={trained_copy}", "--mode=eval", "--checkpoint=6",
                       "--noplots")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "choose another step" in err


@pytest.mark.parametrize("array, text", [
    (np.zeros((1, 16, 16, 3), bool), "dtype bool"),
    (np.full((1, 16, 16, 3), 1000, np.int64), "values 1000..1000"),
    (np.zeros((1, 16, 16, 3), np.complex64), "dtype complex64"),
    (np.zeros((1, 0, 16, 3), np.uint8), "it is empty"),
])
def test_predict_refuses_pixels_it_would_silently_change(trained, tmp_path, capfd, array, text):
    np.save(tmp_path / "x.npy", array)
    code, _, err = cli(capfd, f"--workdir={trained}", "--mode=predict",
                       f"--input={tmp_path / 'x.npy'}", f"--output={tmp_path / 'out'}",
                       "--noplots")
    assert code == 1 and "Traceback" not in err and text in err, err


def test_init_from_npz_that_is_one_array(tmp_path, capfd):
    np.save(tmp_path / "w.npy", np.ones(3, np.float32))
    (tmp_path / "w.npy").rename(tmp_path / "w.npz")
    code, _, err = cli(capfd, f"--workdir={tmp_path / 'w'}", f"--config={TINY}", "--noplots",
                       f"--config.init_from={tmp_path / 'w.npz'}")
    assert code == 1 and "Traceback" not in err and "not named arrays" in err, err


def test_sweep_missing_config_and_damaged_records(trained, tmp_path, capsys):
    from experiments import sweep

    assert sweep.main(["sweep", f"--workdir={tmp_path / 's'}", "--config=/nope.py",
                       "--dry-run"]) == 2
    assert "no such config file" in capsys.readouterr().err
    damage = {
        "record_list": lambda d: (d / "sweep_run.json").write_text("[1, 2]"),
        "attempts_int": lambda d: (d / "sweep_run.json").write_text('{"attempts": 5}'),
        "attempts_str": lambda d: (d / "sweep_run.json").write_text('{"attempts": ["x"]}'),
        "best_metric_int": lambda d: (d / "summary.json").write_text(
            '{"status": "completed", "step": 6, "best_metric": 3, "val": {"accuracy": 0.5}}'),
        "config_garbage": lambda d: (d / "config.json").write_text("{"),
    }
    for name, fn in damage.items():
        shutil.copytree(trained, tmp_path / "r" / name)
        fn(tmp_path / "r" / name)
    code = sweep.main(["sweep", "--report", str(tmp_path / "r"), "--noplots"])
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err, err
    assert err.strip().splitlines() == [
        f"experiments.sweep: skipped {tmp_path / 'r' / 'config_garbage'}: "
        f"{tmp_path / 'r' / 'config_garbage' / 'config.json'} is missing or unreadable: not a "
        "cnnjax workdir (or a run that never started)"]
