"""`cnnjax.checks`: each check returns the value it accepts and refuses the rest with the
error type and a message naming argument, value and expectation."""

from __future__ import annotations

import numpy as np
import pytest

from cnnjax import checks


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda: checks.check_int(np.int64(3), "n"), 3),
        (lambda: checks.check_int(0, "seed", minimum=0), 0),
        (lambda: checks.int_tuple(2, 3, "stride"), (2, 2, 2)),
        (lambda: checks.int_tuple([1, 2], 2, "stride", minimum=1), (1, 2)),
        (lambda: checks.check_int_sequence([2, 3], "widths"), (2, 3)),
        (lambda: checks.check_positive_number(0.5, "sigma"), 0.5),
        (lambda: checks.check_rate(0, "dropout"), 0.0),
        (lambda: checks.check_bool(np.bool_(True), "ceil_mode"), True),
        (lambda: checks.check_choice("b", "mode", ("a", "b")), "b"),
    ],
)
def test_accepted_values_come_back(call, expected):
    got = call()
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: checks.check_int(True, "n"), TypeError, r"n must be an int, got bool True"),
        (lambda: checks.check_int(2.0, "n"), TypeError, r"n must be an int, got float 2.0"),
        (lambda: checks.check_int(0, "depth"), ValueError, r"depth must be >= 1, got 0"),
        (lambda: checks.check_int(-1, "seed", minimum=0), ValueError, r"seed must be >= 0"),
        (lambda: checks.int_tuple((1, 2), 3, "k"), ValueError, r"k must be .* 3 ints.*2 values"),
        (lambda: checks.int_tuple("3", 2, "k"), TypeError, r"k must be an int or a sequence"),
        (lambda: checks.int_tuple(0, 2, "k", minimum=1), ValueError, r"k must be >= 1"),
        (lambda: checks.check_int_sequence([], "w"), ValueError, r"w must be a non-empty"),
        (lambda: checks.check_int_sequence([2, 0], "w"), ValueError, r"positive ints, got"),
        (lambda: checks.check_int_sequence("ab", "w"), ValueError, r"got 'ab'"),
        (lambda: checks.check_positive_number(0, "p"), ValueError, r"p must be a finite"),
        (lambda: checks.check_rate(1.0, "dropout"), ValueError, r"dropout .* \[0, 1\), got 1.0"),
        (lambda: checks.check_rate(float("nan"), "r"), ValueError, r"r must be a number"),
        (lambda: checks.check_bool(1, "flag"), TypeError, r"flag must be a bool, got int 1"),
        (
            lambda: checks.check_choice("c", "stem", ("a", "b")),
            ValueError,
            r"stem must be one of 'a', 'b'; got 'c'",
        ),
        (lambda: checks.check_choice(["a"], "stem", ("a",)), ValueError, r"got \['a'\]"),
    ],
)
def test_refused_values_name_argument_value_and_expectation(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize(
    "value, expected",
    [(None, True), ("1", True), ("yes", True), ("0", False), (" OFF ", False), ("False", False),
     ("no", False)],
)
def test_env_switch(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("CNNJAX_TEST_SWITCH", raising=False)
    else:
        monkeypatch.setenv("CNNJAX_TEST_SWITCH", value)
    assert checks.env_switch("CNNJAX_TEST_SWITCH") is expected


@pytest.mark.parametrize("value", ["disabled", "of", "2", "enable"])
def test_env_switch_refuses_what_is_neither_on_nor_off(monkeypatch, value):
    """Issue 23 item 8: CNNJAX_ONEDNN=disabled silently counted as on."""
    monkeypatch.setenv("CNNJAX_TEST_SWITCH", value)
    with pytest.raises(ValueError, match=rf"CNNJAX_TEST_SWITCH='{value}': expected 1/true"):
        checks.env_switch("CNNJAX_TEST_SWITCH")
