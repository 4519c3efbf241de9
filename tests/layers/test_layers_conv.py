"""Conv and ConvTranspose layers against Flax's stock layers and lax (independent references)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax.layers import Conv, ConvTranspose


def _rand(key, shape):
    return jax.random.normal(jax.random.key(key), shape, jnp.float32)


def _conv_and_flax(ours, theirs, x):
    """Initialises `ours`, applies both with ours' parameters; returns the two outputs."""
    variables = ours.init(jax.random.key(0), x)
    # Nonzero bias so it is checked too.
    params = jax.tree.map(lambda a: a + 0.1, variables["params"])
    return ours.apply({"params": params}, x), theirs.apply({"params": params}, x)


@pytest.mark.parametrize(
    ("shape", "kwargs", "flax_kwargs"),
    [
        ((2, 9, 3), dict(kernel_size=3, padding=0), dict(kernel_size=(3,), padding="VALID")),
        (
            (2, 9, 8, 4),
            dict(kernel_size=(3, 2), stride=2, padding=((1, 2), (0, 1)), dilation=(1, 2), groups=2),
            dict(
                kernel_size=(3, 2),
                strides=2,
                padding=((1, 2), (0, 1)),
                kernel_dilation=(1, 2),
                feature_group_count=2,
            ),
        ),
        ((1, 5, 6, 7, 2), dict(kernel_size=3, padding=1), dict(kernel_size=(3, 3, 3), padding=1)),
        (
            (2, 10, 9, 3),
            dict(kernel_size=3, stride=2, padding="same"),
            dict(kernel_size=(3, 3), strides=2, padding="SAME"),
        ),
        (
            (2, 10, 3),
            dict(kernel_size=4, padding="causal"),
            dict(kernel_size=(4,), padding="CAUSAL"),
        ),
        (
            (2, 7, 6, 3),
            dict(kernel_size=3, padding=1, padding_mode="circular"),
            dict(kernel_size=(3, 3), padding="CIRCULAR"),
        ),
        (
            (2, 7, 6, 3),
            dict(kernel_size=3, padding=1, padding_mode="reflect"),
            dict(kernel_size=(3, 3), padding="REFLECT"),
        ),
    ],
)
def test_conv_equals_flax_conv(shape, kwargs, flax_kwargs):
    x = _rand(1, shape)
    y, ref = _conv_and_flax(Conv(4, **kwargs), nn.Conv(4, **flax_kwargs), x)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_conv_parameter_layout_and_no_bias():
    x = jnp.zeros((1, 8, 8, 6))
    params = Conv(9, (3, 2), groups=3).init(jax.random.key(0), x)["params"]
    assert params["kernel"].shape == (3, 2, 2, 9)
    assert params["bias"].shape == (9,)
    params = Conv(9, 1, use_bias=False).init(jax.random.key(0), x)["params"]
    assert set(params) == {"kernel"}


def test_conv_dtype_policy():
    x = _rand(0, (1, 6, 6, 3))
    layer = Conv(4, 3, dtype=jnp.bfloat16)
    variables = layer.init(jax.random.key(0), x)
    assert variables["params"]["kernel"].dtype == jnp.float32
    assert layer.apply(variables, x).dtype == jnp.bfloat16


def test_conv_errors():
    x = jnp.zeros((1, 8, 8, 6))
    with pytest.raises(ValueError, match="groups=4"):
        Conv(8, 3, groups=4).init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="kernel_size"):
        Conv(8, (3, 3, 3)).init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="features"):
        Conv(0, 3).init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="ndim 2"):
        Conv(8, 3).init(jax.random.key(0), jnp.zeros((8, 6)))


def test_conv_transpose_up_conv_2x2_equals_einsum():
    """kernel = stride = 2 (U-Net up-conv): out[2i+a, 2j+b, o] = sum_c x[i,j,c] K[a,b,o,c] + b."""
    x = _rand(2, (2, 3, 4, 5))
    layer = ConvTranspose(6, 2, stride=2)
    params = layer.init(jax.random.key(0), x)["params"]
    k, b = params["kernel"], params["bias"] + 0.3
    assert k.shape == (2, 2, 6, 5)
    y = layer.apply({"params": {"kernel": k, "bias": b}}, x)
    ref = np.einsum("nijc,aboc->niajbo", np.asarray(x), np.asarray(k)).reshape(2, 6, 8, 6) + b
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_conv_transpose_is_adjoint_of_conv():
    """Strided, padded, with output_padding: equals the vjp of lax's conv w.r.t. its input."""
    x = _rand(3, (2, 4, 5, 3))
    layer = ConvTranspose(4, 3, stride=2, padding=1, output_padding=1, use_bias=False)
    params = layer.init(jax.random.key(0), x)["params"]
    y = layer.apply({"params": params}, x)
    # (n - 1)*stride - 2*padding + (k - 1) + output_padding + 1
    assert y.shape == (2, 8, 10, 4)

    def forward(z):  # conv from 4 to 3 channels with the same kernel (k, k, 4, 3)
        return jax.lax.conv_general_dilated(
            z,
            params["kernel"],
            (2, 2),
            ((1, 1), (1, 1)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )

    out, vjp = jax.vjp(forward, jnp.zeros(y.shape))
    assert out.shape == x.shape
    (ref,) = vjp(x)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_conv_transpose_groups_error():
    with pytest.raises(ValueError, match="groups=2"):
        ConvTranspose(3, 2, groups=2).init(jax.random.key(0), jnp.zeros((1, 4, 4, 4)))
