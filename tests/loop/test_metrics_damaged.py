"""A damaged metrics.jsonl on resume (issue 23 item 13): a non-UTF-8 byte or a non-object row
blocked resume with a message naming no file, or a traceback; a corrupt middle row was dropped
silently on rewrite. Now: the run resumes, the damaged lines are named in a warning and the
file as it was is kept beside it."""

from __future__ import annotations

import json
import logging

import pytest

from cnnjax.train.runner.reporting import read_metrics, truncate_metrics_file
from cnnjax.viz import load_metrics


def _rows(*steps):
    return [json.dumps({"step": s, "split": "train", "loss": 1.0 / s}).encode() + b"\n"
            for s in steps]


@pytest.mark.parametrize("bad, why", [
    (b'{"step": 3, "split": "train", "loss": 0.\xff}\n', "not UTF-8"),
    (b"[3, 4]\n", "a JSON list, not an object"),
    (b"17\n", "a JSON int, not an object"),
    (b'{"step": "3"}\n', "no int step"),
    (b'{"step": 3, "spl\n', "not JSON"),  # a torn row in the middle: not from a kill
])
def test_damaged_middle_row_is_kept_aside_and_named(tmp_path, caplog, bad, why):
    path = tmp_path / "metrics.jsonl"
    r2, r4, r6 = _rows(2, 4, 6)
    original = r2 + bad + r4 + r6
    path.write_bytes(original)
    with caplog.at_level(logging.WARNING, logger="cnnjax.train"):
        assert truncate_metrics_file(path, 4) == 2  # the damaged row and step 6
    assert path.read_bytes() == r2 + r4
    (backup,) = tmp_path.glob("metrics.jsonl.damaged-*")
    assert backup.read_bytes() == original  # nothing lost
    (message,) = [r.getMessage() for r in caplog.records]
    assert str(path) in message and f"line 2: {why}" in message and str(backup) in message
    assert [r["step"] for r in read_metrics(path)] == [2, 4]


def test_a_torn_last_line_is_dropped_quietly(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b"".join(_rows(2, 4)) + b'{"step": 6, "lo')
    with caplog.at_level(logging.WARNING, logger="cnnjax.train"):
        assert truncate_metrics_file(path, 4) == 1
    assert not caplog.records and not list(tmp_path.glob("*.damaged-*"))


def test_plot_reader_names_the_file_and_line_of_a_non_utf8_row(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b"".join(_rows(2)) + b'{"step": 4, "x": "\xff"}\n')
    with pytest.raises(ValueError, match=r"metrics\.jsonl:2 is not UTF-8 text"):
        load_metrics(path)
