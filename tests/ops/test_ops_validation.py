"""Every bad argument raises ValueError/TypeError naming the argument and the value."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import ops

X2 = jnp.zeros((2, 6, 6, 4))
K2 = jnp.zeros((3, 3, 4, 8))
KT2 = jnp.zeros((2, 2, 8, 4))  # conv_transpose kernel: (*k, out_ch // groups, in_ch)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(x=jnp.zeros((6, 6, 4))), ValueError, r"x must have shape .*2 spatial.*ndim 3"),
        (dict(x=jnp.zeros((2, 6, 6, 6, 4))), ValueError, r"x must have shape.*ndim 5"),
        (dict(kernel=jnp.zeros((3, 4))), ValueError, r"kernel must have shape.*\(3, 4\)"),
        (dict(kernel=jnp.zeros((1, 1, 1, 1, 3, 3, 4, 8))), ValueError, r"kernel must have shape"),
        (dict(x=jnp.zeros((2, 6, 6, 5))), ValueError, r"groups=1 must divide|channel mismatch"),
        (dict(kernel=jnp.zeros((3, 3, 3, 8))), ValueError, r"channel mismatch: x has 4 channels"),
        (dict(groups=3), ValueError, r"groups=3 must divide the input channels, got 4"),
        (
            dict(kernel=jnp.zeros((3, 3, 2, 6)), groups=4),
            ValueError,
            r"groups=4 must divide the output channels, got 6",
        ),
        (dict(groups=0), ValueError, r"groups must be >= 1, got 0"),
        (dict(groups=1.0), TypeError, r"groups must be an int, got float 1.0"),
        (dict(stride=0), ValueError, r"stride must be >= 1 in every spatial dim, got 0"),
        (dict(stride=(1, 0)), ValueError, r"stride must be >= 1.*\(1, 0\)"),
        (dict(stride=(1, 1, 1)), ValueError, r"stride must be an int or a sequence of 2 ints"),
        (dict(stride=1.5), TypeError, r"stride must be an int or a sequence of 2 ints.*1.5"),
        (dict(dilation=0), ValueError, r"dilation must be >= 1 in every spatial dim, got 0"),
        (dict(dilation=(2, -1)), ValueError, r"dilation must be >= 1"),
        (dict(padding=-1), ValueError, r"padding must be >= 0 on every side, got -1"),
        (dict(padding=((0, -1), (0, 0))), ValueError, r"padding must be >= 0"),
        (dict(padding="full"), ValueError, r"padding must be .*'valid', 'same', 'causal'.*'full'"),
        (dict(padding="causal"), ValueError, r"padding='causal' is only defined for 1D.*2D"),
        (dict(padding=(1, 2, 3)), TypeError, r"padding must be an int, 2 ints, 2 \(low, high\)"),
        (dict(padding=1.0), TypeError, r"padding must be an int"),
        (
            dict(padding_mode="mirror"),
            ValueError,
            r"padding_mode must be one of 'zeros', 'reflect', 'replicate', 'circular'.*mirror",
        ),
        (
            dict(padding=6, padding_mode="reflect"),
            ValueError,
            r"padding \(6, 6\) along spatial dim 0.*'reflect' needs padding smaller than the input "
            r"size 6",
        ),
        (
            dict(padding=7, padding_mode="circular"),
            ValueError,
            r"'circular' needs padding at most the input size 6",
        ),
        (
            dict(kernel=jnp.zeros((7, 3, 4, 8))),
            ValueError,
            r"window larger than the padded input: kernel_size 7",
        ),
        (dict(dilation=3), ValueError, r"kernel_size 3 with dilation 3 spans 7"),
        (dict(bias=jnp.zeros((4,))), ValueError, r"bias must have shape \(8,\).*got shape \(4,\)"),
        (dict(x=jnp.zeros((2, 6, 6, 4), jnp.int32)), TypeError, r"x must have a floating"),
        (dict(x="image"), TypeError, r"x must be an array, got str"),
    ],
)
def test_conv_rejects(kwargs, error, match):
    args = dict(x=X2, kernel=K2)
    args.update(kwargs)
    x, kernel = args.pop("x"), args.pop("kernel")
    with pytest.raises(error, match=match):
        ops.conv(x, kernel, **args)


def test_same_padding_that_the_mode_cannot_honour():
    x = jnp.zeros((1, 3, 3))
    k = jnp.zeros((9, 3, 3))  # "same" needs (4, 4) padding of a length-3 input
    with pytest.raises(ValueError, match=r"padding='same' resolves to \(4, 4\).*'reflect'"):
        ops.conv(x, k, padding="same", padding_mode="reflect")
    assert ops.conv(x, k, padding="same").shape == (1, 3, 3)


def test_causal_is_fine_in_1d():
    assert ops.conv(jnp.zeros((1, 5, 2)), jnp.zeros((3, 2, 1)), padding="causal").shape == (1, 5, 1)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            dict(output_padding=2, stride=2),
            ValueError,
            r"output_padding must be >= 0 and smaller than either stride \(2\) or dilation \(1\), "
            r"got 2",
        ),
        (dict(output_padding=-1), ValueError, r"output_padding must be >= 0"),
        (dict(output_padding=(0, 0, 0)), ValueError, r"output_padding must be an int or"),
        (
            dict(kernel=jnp.zeros((2, 2, 8, 3))),
            ValueError,
            r"channel mismatch: x has 4 channels.*in_ch = kernel.shape\[-1\] = 3",
        ),
        (dict(groups=3), ValueError, r"groups=3 must divide the input channels, got 4"),
        (dict(groups=0), ValueError, r"groups must be >= 1, got 0"),
        (dict(groups="2"), TypeError, r"groups must be an int, got str '2'"),
        (dict(stride=0), ValueError, r"stride must be >= 1"),
        (dict(dilation=(1, 0)), ValueError, r"dilation must be >= 1"),
        (dict(padding="same"), ValueError, r"padding must be .*\('valid',\), got 'same'"),
        (dict(padding=5), ValueError, r"padding .* removes the whole output"),
        (dict(bias=jnp.zeros((4,))), ValueError, r"bias must have shape \(8,\)"),
        (dict(x=jnp.zeros((6, 6, 4))), ValueError, r"x must have shape"),
    ],
)
def test_conv_transpose_rejects(kwargs, error, match):
    args = dict(x=X2, kernel=KT2)
    args.update(kwargs)
    x, kernel = args.pop("x"), args.pop("kernel")
    with pytest.raises(error, match=match):
        ops.conv_transpose(x, kernel, **args)


def test_output_padding_below_dilation_is_allowed():
    assert ops.conv_transpose(X2, jnp.zeros((3, 3, 2, 4)), output_padding=1, dilation=2).shape == (
        2,
        11,
        11,
        2,
    )


POOLS = {
    "max_pool": lambda x, **kw: ops.max_pool(x, kw.pop("window", 2), **kw),
    "avg_pool": lambda x, **kw: ops.avg_pool(x, kw.pop("window", 2), **kw),
    "weighted_avg_pool": lambda x, **kw: ops.weighted_avg_pool(x, kw.pop("window", 2), **kw),
}


@pytest.mark.parametrize("pool", list(POOLS))
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(window=0), ValueError, r"window must be >= 1 in every spatial dim, got 0"),
        (dict(window=(2, 2, 2)), ValueError, r"window must be an int or a sequence of 2 ints"),
        (dict(window=2.0), TypeError, r"window must be an int"),
        (dict(window=7), ValueError, r"window larger than the padded input: kernel_size 7"),
        (dict(stride=0), ValueError, r"stride must be >= 1"),
        (dict(stride=(2,)), ValueError, r"stride must be an int or a sequence of 2 ints"),
        (
            dict(padding=2),
            ValueError,
            r"padding must be at most half the \(dilated\) window, got \(2, 2\).*window 2",
        ),
        (dict(padding="full"), ValueError, r"padding must be .*got 'full'"),
        (dict(padding="causal"), ValueError, r"padding must be .*got 'causal'"),
        (dict(padding=-1), ValueError, r"padding must be >= 0"),
    ],
)
def test_pools_reject(pool, kwargs, error, match):
    with pytest.raises(error, match=match):
        POOLS[pool](X2, **kwargs)


@pytest.mark.parametrize("fn", [ops.max_pool, ops.avg_pool, ops.weighted_avg_pool])
def test_pools_reject_wrong_rank(fn):
    with pytest.raises(ValueError, match=r"x must have shape \(batch, \*spatial, channels\)"):
        fn(jnp.zeros((6, 4)), 2)
    with pytest.raises(ValueError, match=r"ndim 6"):
        fn(jnp.zeros((1, 2, 2, 2, 2, 1)), 2)


def test_pool_specific_arguments():
    with pytest.raises(ValueError, match=r"dilation must be >= 1"):
        ops.max_pool(X2, 2, dilation=0)
    with pytest.raises(TypeError, match=r"ceil_mode must be a bool, got str 'yes'"):
        ops.max_pool(X2, 2, ceil_mode="yes")
    with pytest.raises(TypeError, match=r"count_include_pad must be a bool, got int 1"):
        ops.avg_pool(X2, 2, count_include_pad=1)
    with pytest.raises(TypeError, match=r"x must have a floating"):
        ops.avg_pool(jnp.zeros((1, 4, 4, 1), jnp.int32), 2)
    with pytest.raises(ValueError, match=r"sigma must be a finite number > 0, got 0"):
        ops.weighted_avg_pool(X2, 3, sigma=0)
    with pytest.raises(TypeError, match=r"sigma must be a real number, got str"):
        ops.weighted_avg_pool(X2, 3, sigma="1")
    with pytest.raises(ValueError, match=r"p must be a finite number > 0, got -1"):
        ops.lp_pool(X2, -1, 2)
    with pytest.raises(ValueError, match=r"p must be a finite number > 0, got inf"):
        ops.lp_pool(X2, float("inf"), 2)
    with pytest.raises(ValueError, match=r"window larger than the padded input"):
        ops.lp_pool(X2, 2, 7)
    with pytest.raises(ValueError, match=r"at most half.*window 2 with dilation 3 \(max 2\)"):
        ops.max_pool(X2, 2, dilation=3, padding=(3, 0))
    # max pooling of integers is fine (no averaging)
    assert ops.max_pool(jnp.arange(16).reshape(1, 4, 4, 1), 2)[0, 1, 1, 0] == 15


@pytest.mark.parametrize("fn", [ops.adaptive_avg_pool, ops.adaptive_max_pool])
def test_adaptive_pools_reject(fn):
    with pytest.raises(ValueError, match=r"output_size must be >= 1 in every spatial dim, got 0"):
        fn(X2, 0)
    with pytest.raises(ValueError, match=r"output_size must be an int or a sequence of 2 ints"):
        fn(X2, (2, 2, 2))
    with pytest.raises(ValueError, match=r"output_size must have 2 entries"):
        fn(X2, (2, None, 1))
    with pytest.raises(TypeError, match=r"output_size must be an int or 2 ints/None"):
        fn(X2, None)
    with pytest.raises(TypeError, match=r"output_size must be an int or a sequence.*2.5"):
        fn(X2, 2.5)
    with pytest.raises(ValueError, match=r"x must have shape"):
        fn(jnp.zeros((4, 4)), 2)


@pytest.mark.parametrize("fn", [ops.global_avg_pool, ops.global_max_pool])
def test_global_pools_reject_wrong_rank(fn):
    with pytest.raises(ValueError, match=r"x must have shape.*got ndim 2"):
        fn(jnp.zeros((4, 4)))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: ops.conv_output_size(0, 3), ValueError, r"n must be >= 1, got 0"),
        (lambda: ops.conv_output_size(5, 0), ValueError, r"kernel_size must be >= 1, got 0"),
        (lambda: ops.conv_output_size(5, 3, stride=0), ValueError, r"stride must be >= 1"),
        (lambda: ops.conv_output_size(5, 3, dilation=0), ValueError, r"dilation must be >= 1"),
        (lambda: ops.conv_output_size(5.0, 3), TypeError, r"n must be an int, got float"),
        (lambda: ops.conv_output_size(5, 3, padding=-1), ValueError, r"padding must be >= 0"),
        (
            lambda: ops.conv_output_size(5, 3, padding=(1, 2, 3)),
            TypeError,
            r"padding must be an int or a \(low, high\) pair",
        ),
        (lambda: ops.conv_output_size(5, 3, padding="full"), ValueError, r"got 'full'"),
        (lambda: ops.conv_output_size(2, 4), ValueError, r"window larger than the padded input"),
        (
            lambda: ops.conv_transpose_output_size(5, 3, stride=2, output_padding=2),
            ValueError,
            r"output_padding must be >= 0 and smaller than either stride \(2\)",
        ),
        (
            lambda: ops.conv_transpose_output_size(1, 1, padding=1),
            ValueError,
            r"removes the whole output",
        ),
        (lambda: ops.receptive_field(3), TypeError, r"layers must be a sequence"),
        (lambda: ops.receptive_field([(3, 0)]), ValueError, r"layers\[0\].stride must be >= 1"),
        (lambda: ops.receptive_field([(3, 1), (3, 1, 1, 1)]), TypeError, r"layers\[1\] must be"),
        (lambda: ops.receptive_field([(3.0, 1)]), TypeError, r"layers\[0\].kernel_size must be"),
    ],
)
def test_arithmetic_rejects(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_errors_are_raised_at_trace_time_under_jit():
    @jax.jit
    def f(x, k):
        return ops.conv(x, k, stride=0)

    with pytest.raises(ValueError, match="stride must be >= 1"):
        f(X2, K2)
    with pytest.raises(ValueError, match="channel mismatch"):
        jax.eval_shape(lambda x: ops.conv(x, jnp.zeros((3, 3, 5, 8))), np.zeros((2, 6, 6, 4)))
