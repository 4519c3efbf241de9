"""The benchmarks' own arithmetic: analytic FLOPs against closed forms, the equal malloc
settings every column gets, the timing loop."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import pytest
from jax import lax

from benchmarks import end_to_end, train_step
from benchmarks._flops import TRAIN_FACTOR, forward_flops, model_flops
from cnnjax.host_allocator import GLIBC_TUNABLES


def _spec(*shape):
    return jax.ShapeDtypeStruct(shape, jnp.float32)


def test_simple_cnn_flops_equal_the_closed_form():
    per_image = (26 * 26 * 32 * 9 * 1 + 11 * 11 * 64 * 9 * 32 + 3 * 3 * 64 * 9 * 64
                 + 576 * 64 + 64 * 10)  # multiply-adds of the Keras MNIST CNN
    flops = model_flops("simple_cnn", (128, 28, 28, 1), 10)
    assert flops["eval"] == 2 * 128 * per_image
    assert flops["train"] == TRAIN_FACTOR * flops["eval"]


@pytest.mark.parametrize(("stride", "dilation", "groups"), [(1, 1, 1), (2, 1, 1), (1, 2, 3)])
def test_conv_flops_of_strided_dilated_grouped_convs(stride, dilation, groups):
    n, h, cin, cout, k = 2, 15, 6, 9, 3
    x, w = _spec(n, h, h, cin), _spec(k, k, cin // groups, cout)

    def conv(x, w):
        return lax.conv_general_dilated(x, w, (stride, stride), "VALID",
                                        rhs_dilation=(dilation, dilation),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        feature_group_count=groups)

    out = (h - dilation * (k - 1) - 1) // stride + 1
    assert forward_flops(conv, x, w) == 2 * n * out * out * cout * k * k * (cin // groups)


def test_transposed_conv_counts_real_multiply_adds_only():
    """kernel 2, stride 2: each input pixel meets each kernel tap once (no inserted zeros)."""
    n, h, cin, cout = 1, 8, 4, 5
    x, w = _spec(n, h, h, cin), _spec(2, 2, cin, cout)

    def up(x, w):
        return lax.conv_transpose(x, w, (2, 2), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    assert forward_flops(up, x, w) == 2 * n * h * h * cin * cout * 4


def test_matmuls_inside_jit_and_scan_are_counted():
    a, b = _spec(3, 4), _spec(4, 5)

    def f(a, b):
        def body(c, _):
            return c, jax.jit(jnp.matmul)(a, b)
        return lax.scan(body, 0.0, None, length=7)[1]

    assert forward_flops(f, a, b) == 7 * 2 * 3 * 5 * 4


def test_every_benchmark_column_gets_the_same_malloc_settings():
    torch_env = train_step.malloc_env("same")
    cnnjax_env = train_step.malloc_env("same")
    assert torch_env["GLIBC_TUNABLES"] == cnnjax_env["GLIBC_TUNABLES"] == GLIBC_TUNABLES
    assert "glibc.malloc.mmap_max=0" in GLIBC_TUNABLES
    defaults = train_step.malloc_env("defaults")
    assert "GLIBC_TUNABLES" not in defaults and defaults["CNNJAX_HOST_ALLOCATOR"] == "0"
    lever = train_step.malloc_env("same", glibc_defaults=True)
    assert "GLIBC_TUNABLES" not in lever
    assert end_to_end.malloc_env("same")["GLIBC_TUNABLES"] == GLIBC_TUNABLES


def test_time_steps_takes_more_steps_until_min_seconds():
    calls = []

    def step():
        calls.append(1)
        time.sleep(0.002)

    assert len(train_step.time_steps(step, steps=3, warmup=1)) == 3
    calls.clear()
    times = train_step.time_steps(step, steps=3, warmup=1, min_seconds=0.05)
    assert len(calls) == len(times) + 1 and sum(times) >= 50.0 and len(times) > 3
