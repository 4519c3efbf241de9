"""Output sizes, padding resolution and receptive fields against closed forms and brute force."""

from __future__ import annotations

import itertools

import pytest
from ops_reference import ref_pool_windows

from cnnjax import ops
from cnnjax.ops.arithmetic import resolve_padding, same_padding


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_conv_output_size_counts_windows(ceil_mode):
    for n, k, s, d, lo, hi in itertools.product(
        range(1, 9), range(1, 4), range(1, 4), range(1, 3), range(3), range(3)
    ):
        eff = d * (k - 1) + 1
        if n + lo + hi < eff:
            with pytest.raises(ValueError, match="window larger than the padded input"):
                ops.conv_output_size(
                    n, k, stride=s, padding=(lo, hi), dilation=d, ceil_mode=ceil_mode
                )
            continue
        expected = len(ref_pool_windows(n, k, s, lo, hi, d, ceil_mode))
        got = ops.conv_output_size(
            n, k, stride=s, padding=(lo, hi), dilation=d, ceil_mode=ceil_mode
        )
        assert got == expected, (n, k, s, d, lo, hi)


def test_conv_output_size_closed_forms():
    assert ops.conv_output_size(256, 3, stride=2, padding=1) == 128
    assert ops.conv_output_size(224, 7, stride=2, padding=3) == 112  # ResNet stem
    assert ops.conv_output_size(112, 3, stride=2, padding=1) == 56  # ResNet max pool
    assert ops.conv_output_size(227, 11, stride=4) == 55  # AlexNet conv1
    assert ops.conv_output_size(32, 5) == 28  # LeNet-5 C1
    assert ops.conv_output_size(5, 2, stride=2) == 2
    assert ops.conv_output_size(5, 2, stride=2, ceil_mode=True) == 3
    # PyTorch rule: the last window must start inside the input or the low padding.
    assert ops.conv_output_size(5, 2, stride=2, padding=1, ceil_mode=True) == 3
    assert ops.conv_output_size(10, 3, stride=3, padding="same") == 4
    assert ops.conv_output_size(10, 3, dilation=2, padding="causal") == 10


@pytest.mark.parametrize("n", range(1, 12))
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("s", [1, 2, 3])
def test_same_padding_gives_ceil_n_over_s(n, k, s):
    lo, hi = same_padding(n, k, s)
    assert hi - lo in (0, 1)
    assert ops.conv_output_size(n, k, stride=s, padding=(lo, hi)) == -(-n // s)


def test_same_padding_examples():
    assert same_padding(5, 3) == (1, 1)
    assert same_padding(6, 4) == (1, 2)  # odd extra on the high side (TF)
    assert same_padding(224, 7, 2) == (2, 3)
    assert same_padding(5, 3, 1, 2) == (2, 2)


def test_resolve_padding_spellings():
    spatial, ks, st, dl = (8, 9), (3, 4), (1, 1), (1, 1)
    assert resolve_padding(2, spatial, ks, st, dl) == ((2, 2), (2, 2))
    assert resolve_padding((1, 2), spatial, ks, st, dl) == ((1, 1), (2, 2))
    assert resolve_padding(((0, 1), (2, 3)), spatial, ks, st, dl) == ((0, 1), (2, 3))
    assert resolve_padding("valid", spatial, ks, st, dl) == ((0, 0), (0, 0))
    assert resolve_padding("SAME", spatial, ks, st, dl) == ((1, 1), (1, 2))
    assert resolve_padding("causal", (8,), (3,), (1,), (2,)) == ((4, 0),)


@pytest.mark.parametrize("n", [1, 2, 5, 8])
@pytest.mark.parametrize(
    ("k", "s", "lo", "hi", "op", "d"),
    [
        (3, 2, 1, 1, 1, 1),
        (2, 2, 0, 0, 0, 1),
        (4, 1, 0, 0, 0, 1),
        (3, 3, 1, 0, 2, 1),
        (3, 1, 1, 1, 1, 2),
    ],
)
def test_conv_transpose_output_size(n, k, s, lo, hi, op, d):
    expected = (n - 1) * s - lo - hi + d * (k - 1) + op + 1
    got = ops.conv_transpose_output_size(
        n, k, stride=s, padding=(lo, hi), output_padding=op, dilation=d
    )
    assert got == expected
    if op < s:
        # and the forward conv maps that size back to n
        assert ops.conv_output_size(got, k, stride=s, padding=(lo, hi), dilation=d) == n


def test_receptive_field():
    # two 3x3 convs see 5x5, three see 7x7 (VGG's argument)
    assert ops.receptive_field([(3, 1), (3, 1)])[-1] == ops.ReceptiveField(5, 1)
    assert ops.receptive_field([3, 3, 3])[-1].size == 7
    # conv k3 s2 then max pool k4 s1 (the 256 -> 125 example): 3 + 3*2 = 9, jump 2
    assert ops.receptive_field([(3, 2), (4, 1)]) == (
        ops.ReceptiveField(3, 2),
        ops.ReceptiveField(9, 2),
    )
    # ResNet stem: conv 7 s2, max pool 3 s2 -> 7 + 2*2 = 11, jump 4
    assert ops.receptive_field([ops.LayerSpec(7, 2), ops.LayerSpec(3, 2)])[-1] == (11, 4)
    # dilation: a 3-tap conv with dilation 2 spans 5
    assert ops.receptive_field([(3, 1, 2)])[-1] == (5, 1)
    assert ops.receptive_field([]) == ()


def test_receptive_field_matches_brute_force():
    # 1D: perturb one input pixel, count which outputs of a stack of sliding windows move.
    layers = [(3, 2, 1), (2, 1, 2), (3, 2, 1)]
    n = 64
    # windows of the stack, as index sets in the input, for the first output unit
    covered = {0}
    for k, s, d in reversed(layers):
        covered = {o * s + j * d for o in covered for j in range(k)}
    size = max(covered) - min(covered) + 1
    assert ops.receptive_field(layers)[-1] == (size, 2 * 1 * 2)
    assert size <= n
