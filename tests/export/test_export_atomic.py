"""An interrupted export into an existing folder (issue 23 item 4): it left the new
model.stablehlo beside the earlier model.onnx and export.json. Exports are now staged in a
hidden sibling folder and renamed into place: the old export or the new one, never a mix."""

from pathlib import Path

import pytest
from export_helpers import make_model

from cnnjax.export import core, export_model

SHAPE = (20, 20, 1)


@pytest.fixture(scope="module")
def tiny():
    return make_model("simple_cnn", {"widths": (4, 4, 4), "hidden": 8}, SHAPE)


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}


def _interrupting(name: str):
    def exporter(spec, output_dir):
        (output_dir / f"model.{name}").write_bytes(b"half written")
        raise KeyboardInterrupt  # Ctrl-C (or a crash) after some files were written
    return exporter


def test_interrupted_export_leaves_the_earlier_one_intact(tiny, tmp_path, monkeypatch):
    model, variables = tiny
    out = tmp_path / "export"
    export_model(model, variables, input_shape=SHAPE, output_dir=out, formats="stablehlo",
                 metadata={"checkpoint": {"step": 3}})
    before = _tree(out)
    monkeypatch.setitem(core.FORMATS._entries, "zzz_interrupt", _interrupting("zzz"))
    other, other_vars = make_model("simple_cnn", {"widths": (4, 4, 4), "hidden": 8}, SHAPE, seed=1)
    with pytest.raises(KeyboardInterrupt):
        export_model(other, other_vars, input_shape=SHAPE, output_dir=out,
                     formats="stablehlo,zzz_interrupt", metadata={"checkpoint": {"step": 6}})
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no staging left


def test_a_new_export_replaces_the_earlier_one_whole(tiny, tmp_path, monkeypatch):
    model, variables = tiny
    out = tmp_path / "export"
    monkeypatch.setitem(core.FORMATS._entries, "extra",
                        lambda spec, d: ((d / "model.extra").write_text("x"), (d / "model.extra",
                                                                              {}))[1])
    export_model(model, variables, input_shape=SHAPE, output_dir=out, formats="stablehlo,extra")
    paths = export_model(model, variables, input_shape=SHAPE, output_dir=out,
                         formats="stablehlo")
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "model.stablehlo"]
    assert paths == {"stablehlo": out / "model.stablehlo", "export.json": out / "export.json"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_a_folder_of_other_files_or_a_file_is_refused(tiny, tmp_path):
    model, variables = tiny
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"holds files but no export\.json"):
        export_model(model, variables, input_shape=SHAPE, output_dir=tmp_path)
    assert _tree(tmp_path) == {"notes.txt": b"mine"}
    with pytest.raises(ValueError, match="is a file"):
        export_model(model, variables, input_shape=SHAPE, output_dir=tmp_path / "notes.txt")
