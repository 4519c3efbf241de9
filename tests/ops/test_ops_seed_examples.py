"""The worked examples of the seed lecture notes, as exact values (hand-computed there)."""

from __future__ import annotations

import numpy as np

from cnnjax import ops


def _conv2d(image, kernel, **kw) -> np.ndarray:
    x = np.asarray(image, np.float32)[None, :, :, None]
    w = np.asarray(kernel, np.float32)[:, :, None, None]
    return np.asarray(ops.conv(x, w, **kw))[0, :, :, 0]


def _conv1d(signal, kernel, **kw) -> np.ndarray:
    x = np.asarray(signal, np.float32)[None, :, None]
    w = np.asarray(kernel, np.float32)[:, None, None]
    return np.asarray(ops.conv(x, w, **kw))[0, :, 0]


def test_vertical_edge_detector():
    image = np.zeros((6, 6))
    image[:, :3] = 10
    kernel = [[1, 0, -1]] * 3
    np.testing.assert_array_equal(_conv2d(image, kernel), [[0, 30, 30, 0]] * 4)


def test_1d_filter():
    out = _conv1d([0, 0, 1, 1, 1, 0, 1, 0, 0, 0], [-1, 1, -1])
    np.testing.assert_array_equal(out, [-1, 0, -1, 0, -2, 1, -1, 0])


def test_2x2_filter_on_4x4_image():
    image = [[1, 0.5, 1, 0], [0, 0.25, 0.5, 1], [1, 0.25, 0, 1], [0.5, 0, 1, 1]]
    out = _conv2d(image, [[1, 0], [0, 2]])
    np.testing.assert_array_equal(out, [[1.5, 1.5, 3], [0.5, 0.25, 2.5], [1, 2.25, 2]])


BINARY = [
    [1, 0, 1, 0, 0],
    [1, 0, 1, 0, 1],
    [1, 1, 1, 0, 0],
    [1, 0, 1, 0, 1],
    [1, 0, 1, 0, 1],
]
CENTRE_FILTER = [[-1, -1, -1], [-1, 1, -1], [-1, -1, -1]]


def test_binary_image_valid():
    np.testing.assert_array_equal(
        _conv2d(BINARY, CENTRE_FILTER), [[-7, -2, -4], [-5, -2, -5], [-7, -2, -5]]
    )


def test_binary_image_zero_padded_then_relu():
    # Each output is 2*x[i, j] minus the sum of its 3x3 neighbourhood (zeros outside),
    # worked out by hand; its centre 3x3 is the valid result above and its ReLU is the
    # notes' map: a single 1 at row 1, column 4.
    out = _conv2d(BINARY, CENTRE_FILTER, padding=1)
    expected = np.array(
        [
            [0, -4, 0, -3, -1],
            [-2, -7, -2, -4, 1],
            [-2, -5, -2, -5, -2],
            [-2, -7, -2, -5, 0],
            [0, -4, 0, -4, 0],
        ]
    )
    np.testing.assert_array_equal(out, expected)
    relu = np.zeros((5, 5))
    relu[1, 4] = 1
    np.testing.assert_array_equal(np.maximum(out, 0), relu)


FEATURE_MAP = np.zeros((6, 6), np.float32)
FEATURE_MAP[1, 4] = 1
FEATURE_MAP[3, 1] = 1


def test_max_pool_3x3_stride_1():
    out = ops.max_pool(FEATURE_MAP[None, :, :, None], 3, stride=1)[0, :, :, 0]
    np.testing.assert_array_equal(out, [[0, 0, 1, 1], [1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 0, 0]])


def test_max_pool_3x3_stride_3():
    out = ops.max_pool(FEATURE_MAP[None, :, :, None], 3, stride=3)[0, :, :, 0]
    np.testing.assert_array_equal(out, [[0, 1], [1, 0]])


def test_max_pool_2x2_of_4x4():
    x = np.array([[7, 3, 5, 2], [8, 7, 1, 6], [4, 9, 3, 9], [0, 8, 4, 5]], np.float32)
    np.testing.assert_array_equal(
        ops.max_pool(x[None, :, :, None], 2)[0, :, :, 0], [[8, 6], [9, 9]]
    )


def test_avg_pool_2x2_first_value():
    x = np.array(
        [
            [9, 6, 2, 6, 8, 9],
            [7, 9, 0, 9, 9, 2],
            [5, 5, 5, 8, 5, 9],
            [9, 4, 9, 7, 2, 1],
            [6, 6, 9, 3, 4, 6],
            [9, 3, 4, 1, 7, 2],
        ],
        np.float32,
    )
    out = np.asarray(ops.avg_pool(x[None, :, :, None], 2, stride=2, padding=0))[0, :, :, 0]
    assert out.shape == (3, 3)
    assert out[0, 0] == 7.75
    np.testing.assert_array_equal(
        out[2], [(6 + 6 + 9 + 3) / 4, (9 + 3 + 4 + 1) / 4, (4 + 6 + 7 + 2) / 4]
    )


def test_256_image_through_conv_then_pool_is_125():
    # conv k3 s2 p1: floor((256 + 2 - 3)/2) + 1 = 128; max pool k4 s1: 128 - 4 + 1 = 125
    n = ops.conv_output_size(256, 3, stride=2, padding=1)
    assert n == 128
    assert ops.conv_output_size(n, 4, stride=1) == 125
    x = np.zeros((1, 256, 256, 1), np.float32)
    y = ops.max_pool(
        ops.conv(x, np.ones((3, 3, 1, 1), np.float32), stride=2, padding=1), 4, stride=1
    )
    assert y.shape == (1, 125, 125, 1)


def test_same_padding_keeps_5x5():
    assert _conv2d(BINARY, CENTRE_FILTER, padding="same").shape == (5, 5)
    assert _conv2d(BINARY, CENTRE_FILTER, padding="valid").shape == (3, 3)
