# %% [markdown]
# # 01 · Convolution arithmetic with `cnnjax.ops`
#
# The worked examples of the lecture notes, computed with `cnnjax.ops` and checked against
# the numbers printed in the notes: vertical edge detection, the 1D and 2D examples,
# padding, stride and the output-size formula, max / average / weighted / adaptive
# pooling, 1x1 and transposed convolutions, receptive fields, and finally hand-crafted
# filters (edges, blur, sharpen) on real images.
#
# Conventions (see `DESIGN.md`): arrays are channels-last, `(batch, *spatial, channels)`;
# kernels are `(*kernel_size, in_channels, out_channels)`; and "convolution" means
# **cross-correlation**, as in every deep learning library (the notes mark it with `*`):
# the filter is slid over the image without flipping it.
#
# Runs in seconds on a CPU. `CNNJAX_NOTEBOOK_FAST=1` (set by CI) changes nothing here but
# is honoured for symmetry with the other notebooks. Real images come from
# `$CNNJAX_DATA_DIR` or `../../shared/data` (MNIST) when present, otherwise from the
# procedural `shapes` data set.

# %%
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

from cnnjax import ops, viz

# cnnjax.viz returns matplotlib Figures (built without pyplot); this shows them inline
%matplotlib inline
matplotlib.rcParams["figure.dpi"] = 80

FAST = os.environ.get("CNNJAX_NOTEBOOK_FAST", "0") not in ("", "0", "false", "False")
np.set_printoptions(precision=3, suppress=True)


def conv2d(image, kernel, **kwargs):
    """One (H, W) image and one (kh, kw) filter through `ops.conv`, which works on batches
    of multi-channel images: add the batch and channel axes, then drop them again."""
    x = jnp.asarray(image, jnp.float32)[None, :, :, None]
    k = jnp.asarray(kernel, jnp.float32)[:, :, None, None]
    return np.asarray(ops.conv(x, k, **kwargs)[0, :, :, 0])


def pool2d(pool_fn, image, *args, **kwargs):
    """A pooling op of `cnnjax.ops` on one (H, W) image."""
    x = jnp.asarray(image, jnp.float32)[None, :, :, None]
    return np.asarray(pool_fn(x, *args, **kwargs)[0, :, :, 0])


def relu(x):
    return np.maximum(x, 0)


print("jax", jax.__version__, "| devices:", jax.devices(), "| fast mode:", FAST)

# %% [markdown]
# ## 1. Vertical edge detection
#
# The 6x6 image is bright (10) on the left and dark (0) on the right; the 3x3 filter has a
# column of 1s, a column of 0s and a column of -1s. Sliding it over the image ("valid": no
# padding) gives a 4x4 response map whose two middle columns light up (30) exactly where
# the brightness changes: **brighter colours mean higher numbers**, and the edge is found.

# %%
image = np.array([[10, 10, 10, 0, 0, 0]] * 6)
vertical_edge = np.array([[1, 0, -1]] * 3)
response = conv2d(image, vertical_edge)
print(response)

expected = np.array([[0, 30, 30, 0]] * 4)  # the 4x4 result printed in the notes
np.testing.assert_array_equal(response, expected)
viz.plot_images(
    [image, vertical_edge, response],
    titles=["6x6 image", "3x3 filter", "4x4 response"],
    annotate=True,
    ncols=3,
)

# %% [markdown]
# ## 2. A 1D example
#
# A 1D image of 10 pixels and the filter `[-1, 1, -1]`. Each output is the dot product of
# the filter with 3 neighbouring pixels, e.g. the first: `0*-1 + 0*1 + 1*-1 = -1`. A ReLU
# then keeps the positive responses only. **What does the filter do?** It responds (with
# +1) only to a 1 whose two neighbours are 0: an isolated bright pixel.

# %%
signal = np.array([0, 0, 1, 1, 1, 0, 1, 0, 0, 0], np.float32)
filter_1d = np.array([-1, 1, -1], np.float32)
out_1d = np.asarray(ops.conv(signal[None, :, None], filter_1d[:, None, None])[0, :, 0])
print("after convolution:", out_1d)
print("after ReLU:       ", relu(out_1d))
np.testing.assert_array_equal(out_1d, [-1, 0, -1, 0, -2, 1, -1, 0])
np.testing.assert_array_equal(relu(out_1d), [0, 0, 0, 0, 0, 1, 0, 0])

# %% [markdown]
# **How many weights?** The filter has 3 weights plus one bias: 4 parameters, whatever
# the length of the image. A fully connected layer from 10 inputs to 10 outputs needs
# `10 x 11 = 110` (a weight per input-output pair plus a bias per output). That is the
# sparse connectivity and parameter sharing of convolutions.

# %%
conv_params = filter_1d.size + 1
dense_params = 10 * 10 + 10
print(f"conv layer: {conv_params} parameters, dense 10 -> 10: {dense_params}")
assert (conv_params, dense_params) == (4, 110)

# %% [markdown]
# ## 3. 2D examples
#
# ### 3.1 A 5x5 image and a 3x3 filter
#
# The filter is -1 everywhere but +1 in the centre. Top-left output:
# `-1 + 0 + -1 + -1 + 0 + -1 + -1 + -1 + -1 = -7`. Without padding the output is 3x3; with
# one row and column of zeros around the image (padding 1) it is 5x5, and after a ReLU a
# single unit is on: the isolated bright pixel at the right edge (row 1, column 4).

# %%
image_2d = np.array(
    [[1, 0, 1, 0, 0], [1, 0, 1, 0, 1], [1, 1, 1, 0, 0], [1, 0, 1, 0, 1], [1, 0, 1, 0, 1]]
)
centre_filter = -np.ones((3, 3))
centre_filter[1, 1] = 1

valid = conv2d(image_2d, centre_filter)
padded = conv2d(image_2d, centre_filter, padding=1)
print("valid (no padding):\n", valid)
print("padding 1:\n", padded)
print("padding 1, then ReLU:\n", relu(padded))

np.testing.assert_array_equal(valid, [[-7, -2, -4], [-5, -2, -5], [-7, -2, -5]])
np.testing.assert_array_equal(
    padded,
    [[0, -4, 0, -3, -1], [-2, -7, -2, -4, 1], [-2, -5, -2, -5, -2], [-2, -7, -2, -5, 0],
     [0, -4, 0, -4, 0]],
)
assert np.argwhere(relu(padded)).tolist() == [[1, 4]]

# %%
viz.plot_images(
    np.stack([padded, relu(padded)]),
    titles=["padding 1", "padding 1 + ReLU"],
    annotate=True,
    ncols=2,
)

# %% [markdown]
# ### 3.2 A 4x4 image and a 2x2 filter: stride and filter size
#
# The element-wise products summed: top-left `1x1 + .5x0 + 0x0 + .25x2 = 1.5`. With stride
# 1 the output is 3x3; with stride 2 the filter jumps two pixels and the output is 2x2; a
# 3x3 filter with stride 1 also gives 2x2. Only 4 parameters map 16 inputs to 9 outputs,
# where a fully connected layer would need `16 x 9 = 144` weights (plus 9 biases).

# %%
image_4x4 = np.array([[1, 0.5, 1, 0], [0, 0.25, 0.5, 1], [1, 0.25, 0, 1], [0.5, 0, 1, 1]])
filter_2x2 = np.array([[1, 0], [0, 2]])
stride1 = conv2d(image_4x4, filter_2x2)
stride2 = conv2d(image_4x4, filter_2x2, stride=2)
filter_3x3 = conv2d(image_4x4, [[1, 0.5, 1], [0, 1, 2], [1, 1, 0]])
print("stride 1:\n", stride1)
print("stride 2:\n", stride2)
print("3x3 filter, stride 1:", filter_3x3.shape)
np.testing.assert_allclose(stride1, [[1.5, 1.5, 3], [0.5, 0.25, 2.5], [1, 2.25, 2]])
assert stride2.shape == (2, 2) and filter_3x3.shape == (2, 2)
np.testing.assert_allclose(stride2, stride1[::2, ::2])  # stride = subsampled stride-1 output
print("parameters: conv", filter_2x2.size, "| fully connected 16 -> 9:", 16 * 9, "+ 9 biases")

# %% [markdown]
# ### 3.3 A curve detector and its receptive field
#
# A 7x7 filter shaped like a curve (30 along the curve, 0 elsewhere), applied to the 7x7
# patch of an image (its receptive field) that contains a similar curve: the products add
# up to `(50x30) + (50x30) + (50x30) + (20x30) + (50x30) = 6600`, a large number, so the
# filter "found" its feature. On a patch without the curve the response is small (here 0).

# %%
patch = np.array(
    [[0, 0, 0, 0, 0, 0, 30], [0, 0, 0, 0, 50, 50, 50], [0, 0, 0, 20, 50, 0, 0],
     [0, 0, 0, 50, 50, 0, 0], [0, 0, 0, 50, 50, 0, 0], [0, 0, 0, 50, 50, 0, 0],
     [0, 0, 0, 50, 50, 0, 0]]
)
curve = np.array(
    [[0, 0, 0, 0, 0, 30, 0], [0, 0, 0, 0, 30, 0, 0], [0, 0, 0, 30, 0, 0, 0],
     [0, 0, 0, 30, 0, 0, 0], [0, 0, 0, 30, 0, 0, 0], [0, 0, 0, 30, 0, 0, 0],
     [0, 0, 0, 0, 0, 0, 0]]
)
other_patch = np.zeros((7, 7))
other_patch[4:, :3] = 50  # another part of the image: a blob away from the curve
print("response on the curve:   ", conv2d(patch, curve)[0, 0])
print("response on another patch:", conv2d(other_patch, curve)[0, 0])
assert conv2d(patch, curve)[0, 0] == 6600
viz.plot_images([patch, curve, other_patch],
                titles=["receptive field", "curve filter", "another patch"], annotate=True, ncols=3)

# %% [markdown]
# ### 3.4 Many filters, many channels
#
# A convolutional layer applies a **filter bank**: K filters give K output channels.
# A filter spans all input channels (an RGB image needs `kh x kw x 3` filters), so the
# input channels of the kernel must match those of the image; `ops.conv` says so clearly
# when they do not.

# %%
rgb = jax.random.uniform(jax.random.key(0), (1, 28, 28, 3))
bank = jax.random.normal(jax.random.key(1), (5, 5, 3, 4))  # 4 filters of 5x5x3
print("28x28x3 image, 4 filters 5x5x3 ->", ops.conv(rgb, bank).shape)
try:
    ops.conv(rgb, bank[:, :, :1])
except ValueError as err:
    print("ValueError:", err)

# %% [markdown]
# The seed notes' first hidden layer: a 28x28 input and 3 filters of 5x5 give 3 feature
# maps of 24x24, "3 x 24 x 24 neurons".

# %%
hidden = ops.conv(jnp.ones((1, 28, 28, 1)), jnp.ones((5, 5, 1, 3)))
print(hidden.shape)
assert hidden.shape == (1, 24, 24, 3)

# %% [markdown]
# ## 4. Padding, stride and the output size
#
# Without padding an `n x m` image and an `f x f` filter give `(n - f + 1) x (m - f + 1)`,
# and the pixels on the border are used less than the ones in the middle. Padding adds `p`
# rows and columns of zeros on each side; "same" padding keeps the size, which for stride
# 1 needs `n + 2p - f + 1 = n`, i.e. `p = (f - 1) / 2` (one reason odd filters are
# preferred). With stride `s` the output is
#
# $$\left\lfloor \frac{n + 2p - f}{s} + 1 \right\rfloor$$
#
# `ops.conv_output_size` implements it (with dilation and asymmetric padding too); the table
# checks it against the formula and the shape `ops.conv` actually returns.

# %%
def formula(n, f, p, s):
    return (n + 2 * p - f) // s + 1


rows = []
for n, f, p, s in [(5, 3, 0, 1), (5, 3, 1, 1), (6, 3, 0, 1), (7, 3, 1, 2), (28, 5, 0, 1),
                   (32, 5, 2, 1), (224, 7, 3, 2), (227, 11, 0, 4), (256, 3, 1, 2)]:
    predicted = ops.conv_output_size(n, f, stride=s, padding=p)
    actual = ops.conv(jnp.zeros((1, n, n, 1)), jnp.zeros((f, f, 1, 1)), stride=s, padding=p)
    assert predicted == formula(n, f, p, s) == actual.shape[1], (n, f, p, s)
    rows.append((n, f, p, s, predicted))
print(" n   f  p  s -> out")
for row in rows:
    print("{:3d} {:3d} {:2d} {:2d} -> {:3d}".format(*row))

# %% [markdown]
# "valid" padding (Keras' default) is no padding; "same" keeps the size (for stride `s`
# the output is `ceil(n / s)`, TensorFlow's rule, with any odd extra row at the bottom).
# The 5x5 image of the notes with a 3x3 filter: 3x3 "valid", 5x5 "same" (p = 1).

# %%
for mode in ("valid", "same"):
    out = ops.conv(jnp.zeros((1, 5, 5, 1)), jnp.zeros((3, 3, 1, 1)), padding=mode)
    print(f"{mode:5s}: 5x5 -> {out.shape[1]}x{out.shape[2]}")
print("'same' padding for f = 3, 5, 7:", [ops.same_padding(5, f) for f in (3, 5, 7)])
print("'same' with stride 2 on 7 pixels:", ops.conv_output_size(7, 3, stride=2, padding="same"))

# %% [markdown]
# **Exercise from the notes.** A max pool of kernel 4, stride 1, no padding, applied to a
# convolution of kernel 3, stride 2, padding 1, applied to a 256x256 image: what is the
# output size? Convolution: `floor((256 + 2 - 3) / 2) + 1 = 128`; pooling:
# `(128 - 4) / 1 + 1 = 125`.

# %%
x256 = jnp.ones((1, 256, 256, 1))
after_conv = ops.conv(x256, jnp.ones((3, 3, 1, 1)), stride=2, padding=1)
after_pool = ops.max_pool(after_conv, 4, stride=1)
print(after_conv.shape, "->", after_pool.shape)
assert after_conv.shape[1] == 128 and after_pool.shape[1] == 125

# %% [markdown]
# **How many parameters do we need in a CNN?** The Keras MNIST model of the notes: conv
# 32 3x3, max pool 2, conv 64 3x3, max pool 2, conv 64 3x3, flatten, dense 64, dense 10.
# A conv layer has `k*k*in*out + out` parameters, whatever the image size; a dense layer
# `in*out + out`. The arithmetic gives the spatial size after each layer (valid padding)
# and the parameter count, 93,322 (notebook 02 checks it against the model zoo).

# %%
size, channels, total = 28, 1, 0
print(f"{'layer':8s} {'output':>12s} {'params':>8s}")
for name, kind, arg in [("conv1", "conv", 32), ("pool1", "pool", 2), ("conv2", "conv", 64),
                        ("pool2", "pool", 2), ("conv3", "conv", 64), ("dense1", "dense", 64),
                        ("logits", "dense", 10)]:
    if kind == "conv":
        params = 3 * 3 * channels * arg + arg
        size, channels = ops.conv_output_size(size, 3), arg
    elif kind == "pool":
        params, size = 0, ops.conv_output_size(size, arg, stride=arg)
    else:
        params = size * size * channels * arg + arg  # flatten, then dense
        size, channels = 1, arg
    total += params
    print(f"{name:8s} {f'{size}x{size}x{channels}':>12s} {params:8,d}")
print("total parameters:", f"{total:,d}")
assert total == 93_322

# %% [markdown]
# Zero padding drawn: the 5x5 image inside a border of zeros; each output of the padded
# convolution above is the filter applied around one of the 25 original pixels.

# %%
viz.plot_images(np.pad(image_2d, 1), titles=["5x5 image, padding 1"], annotate=True)

# %% [markdown]
# ## 5. Pooling
#
# A pooling layer replaces each window by a summary statistic: the maximum, the average,
# or an average weighted by distance from the centre. It has **no weights**, works on
# each channel separately, and shrinks the map (2x2 windows with stride 2 drop 75% of the
# units), which cuts computation and the parameters of later layers.
#
# ### 5.1 Max pooling

# %%
pool_input = np.array([[7, 3, 5, 2], [8, 7, 1, 6], [4, 9, 3, 9], [0, 8, 4, 5]])
pooled = pool2d(ops.max_pool, pool_input, 2, stride=2)
print(pooled)
np.testing.assert_array_equal(pooled, [[8, 6], [9, 9]])

# %% [markdown]
# The notes' 2D example: the output of a convolution and ReLU (a 6x6 map with two active
# units), max pooled with 3x3 windows at stride 1 (a 4x4 map: every window that contains
# an active unit reports it) and at stride 3 (2x2).

# %%
relu_map = np.zeros((6, 6))
relu_map[1, 4] = relu_map[3, 1] = 1
size3_stride1 = pool2d(ops.max_pool, relu_map, 3, stride=1)
size3_stride3 = pool2d(ops.max_pool, relu_map, 3, stride=3)
print(size3_stride1, "\n", size3_stride3)
np.testing.assert_array_equal(
    size3_stride1, [[0, 0, 1, 1], [1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 0, 0]]
)
np.testing.assert_array_equal(size3_stride3, [[0, 1], [1, 0]])

# %% [markdown]
# ### 5.2 Average pooling
#
# Kernel (2, 2), stride (2, 2), padding (0, 0): the first output of the notes' example is
# `(9 + 6 + 7 + 9) / 4 = 7.75`. The whole 3x3 output is checked against NumPy (blocks of
# 2x2 averaged by a reshape).

# %%
avg_input = np.array(
    [[9, 6, 2, 6, 8, 9], [7, 9, 0, 9, 9, 2], [5, 5, 5, 8, 5, 9], [9, 4, 9, 7, 2, 1],
     [6, 6, 9, 3, 4, 6], [9, 3, 4, 1, 7, 2]]
)
averaged = pool2d(ops.avg_pool, avg_input, 2, stride=2)
print(averaged)
assert averaged[0, 0] == 7.75
np.testing.assert_allclose(averaged, avg_input.reshape(3, 2, 3, 2).mean(axis=(1, 3)))
viz.plot_images([avg_input, averaged], titles=["6x6 input", "2x2 average, stride 2"],
                annotate=True, ncols=2)

# %% [markdown]
# ### 5.3 Weighted, overlapping, L^p and global pooling
#
# *Weighted pooling* averages with weights that decay with the distance from the central
# pixel (here a Gaussian of `sigma` pixels); *overlapping pooling* uses windows larger
# than the stride (F = 3, S = 2, as AlexNet); `lp_pool` is the power mean, which tends to
# the max for large p; *global* pooling summarises each whole channel by one number.

# %%
print("Gaussian weights of a 3x3 window, sigma=1:\n",
      np.asarray(ops.pooling.gaussian_window((3, 3), 1.0)))
x6 = jnp.asarray(avg_input, jnp.float32)[None, :, :, None]
print("weighted 3x3, stride 3:\n", np.asarray(ops.weighted_avg_pool(x6, 3, stride=3)[0, ..., 0]))
print("overlapping max 3x3, stride 2 (6x6 -> 2x2):\n",
      np.asarray(ops.max_pool(x6, 3, stride=2)[0, ..., 0]))
print("L^p pooling 2x2 for p = 1, 2, 20 (first window 9, 6, 7, 9):",
      [round(float(ops.lp_pool(x6, p, 2)[0, 0, 0, 0]), 3) for p in (1, 2, 20)])
print(f"global average / max: {float(ops.global_avg_pool(x6)[0, 0]):.3f} / "
      f"{float(ops.global_max_pool(x6)[0, 0]):.0f}")

# %% [markdown]
# ### 5.4 Adaptive pooling: any input size, a fixed output size
#
# Fully convolutional networks accept images of different sizes; adaptive pooling makes
# their last feature maps the same size, so the classifier head fits. Output bin `i`
# covers input positions `floor(i*n/out)` to `ceil((i+1)*n/out)` (PyTorch's bins, which
# overlap when `out` does not divide `n`).

# %%
for h, w in [(28, 28), (32, 32), (45, 37), (7, 7)]:
    x = jax.random.normal(jax.random.key(h * w), (1, h, w, 8))
    print(f"{h}x{w}x8 -> adaptive avg {ops.adaptive_avg_pool(x, 4).shape}, "
          f"adaptive max {ops.adaptive_max_pool(x, (2, 3)).shape}")
print("bins of 7 -> 4:", ops.adaptive.adaptive_bins(7, 4))
row = jnp.arange(7.0)[None, :, None]
print("adaptive average of 0..6 into 4 bins:", np.asarray(ops.adaptive_avg_pool(row, 4)[0, :, 0]))

# %% [markdown]
# ### 5.5 Pooling and invariance
#
# Max pooling reports *that* a feature is present in a window, not exactly *where*: shift
# a map of random features by one pixel and no pixel keeps its value, but about half of the
# max-pooled values (3x3 windows, stride 2) do not change.

# %%
rng = np.random.default_rng(0)
features = rng.random((16, 16))
shifted = np.roll(features, 1, axis=1)
same_conv = np.mean(np.isclose(features[:, 1:], shifted[:, 1:]))
pool_a = pool2d(ops.max_pool, features, 3, stride=2)
pool_b = pool2d(ops.max_pool, shifted, 3, stride=2)
print(f"unchanged after a 1-pixel shift: {same_conv:.0%} of the pixels, "
      f"{np.mean(np.isclose(pool_a, pool_b)):.0%} of the 3x3/2 max-pooled values")

# %% [markdown]
# ## 6. 1x1, 1D, 3D and transposed convolutions
#
# ### 6.1 1x1 convolutions condense the channels
#
# A 1x1 filter looks at one pixel but at all its channels: it is a dense layer applied at
# every position (the same `(in, out)` matrix everywhere), used to shrink or grow the
# channel dimension cheaply.

# %%
x = jax.random.normal(jax.random.key(2), (1, 8, 8, 64))
w = jax.random.normal(jax.random.key(3), (1, 1, 64, 16))
y = ops.conv(x, w)
print(x.shape, "-> 1x1 conv ->", y.shape, "| parameters:", w.size + 16)
np.testing.assert_allclose(y, jnp.einsum("bhwc,cd->bhwd", x, w[0, 0]), rtol=1e-5, atol=1e-5)

# %% [markdown]
# ### 6.2 1D and 3D convolutions
#
# The kernel's rank sets the number of spatial dims: a sequence of scalar measurements
# (an ECG, a histogram) takes a 1D convolution; a video `(time, height, width)` a 3D one.

# %%
ecg = jax.random.normal(jax.random.key(4), (1, 1000, 1))  # batch, time, channels
print("1D:", ecg.shape, "->", ops.conv(ecg, jnp.ones((16, 1, 32)), stride=2).shape)
clip = jax.random.normal(jax.random.key(5), (1, 8, 32, 32, 3))  # batch, t, h, w, rgb
print("3D:", clip.shape, "->", ops.conv(clip, jnp.ones((3, 3, 3, 3, 16)), padding=1).shape)
print("causal 1D padding keeps the length and looks only at the past:",
      ops.conv(ecg, jnp.ones((5, 1, 1)), padding="causal").shape)

# %% [markdown]
# ### 6.3 Transposed convolution ("up-convolution")
#
# U-Net's "up-conv 2x2" doubles the resolution with learned weights: a transposed
# convolution with kernel 2 and stride 2. Each input pixel paints a copy of the kernel,
# scaled by its value, into the output. Output size:
# `(n - 1) s - 2p + d (k - 1) + output_padding + 1`.

# %%
small = np.array([[1.0, 2.0], [3.0, 4.0]])
up_kernel = np.array([[1.0, 0.5], [0.5, 0.25]])
up = np.asarray(
    ops.conv_transpose(jnp.asarray(small)[None, ..., None], jnp.asarray(up_kernel)[..., None, None],
                       stride=2)[0, ..., 0]
)
print(up)
np.testing.assert_allclose(up, np.kron(small, up_kernel))  # no overlap: blocks side by side
viz.plot_images([small, up_kernel, up], titles=["2x2 input", "2x2 kernel", "up-conv: 4x4"],
                annotate=True, ncols=3)

# %% [markdown]
# With a 3x3 kernel and stride 2 the painted copies overlap and add up (the source of
# checkerboard artefacts). And the transposed convolution is the **adjoint** of the
# convolution with the same kernel: `<conv(x), y> = <x, conv_transpose(y)>` for all x, y.
# That is why it is also the gradient of a convolution with respect to its input.

# %%
ones = jnp.ones((1, 3, 3, 1))
overlap = ops.conv_transpose(ones, jnp.ones((3, 3, 1, 1)), stride=2)
print("3x3 kernel, stride 2:\n", np.asarray(overlap[0, ..., 0]))
for n, k, s, p in [(2, 2, 2, 0), (16, 2, 2, 0), (7, 3, 2, 1), (4, 4, 2, 1)]:
    print(f"n={n} k={k} s={s} p={p}: output", ops.conv_transpose_output_size(n, k, stride=s,
                                                                             padding=p))

kx, ky, kk = jax.random.split(jax.random.key(6), 3)
x = jax.random.normal(kx, (1, 9, 9, 2))
kernel = jax.random.normal(kk, (3, 3, 2, 5))
y = jax.random.normal(ky, ops.conv(x, kernel, stride=2, padding=1).shape)
lhs = jnp.vdot(ops.conv(x, kernel, stride=2, padding=1), y)
rhs = jnp.vdot(x, ops.conv_transpose(y, kernel, stride=2, padding=1))
print(f"<conv(x), y> = {float(lhs):.4f}   <x, conv_transpose(y)> = {float(rhs):.4f}")
np.testing.assert_allclose(lhs, rhs, rtol=1e-4)

# %% [markdown]
# ## 7. Receptive fields
#
# A unit of the first layer sees `f x f` pixels; stacking layers grows the region of the
# input that one unit depends on, its **receptive field**. With kernel `k`, dilation `d`
# and the **jump** `j` (product of the strides so far, the distance in input pixels
# between neighbouring units):
#
# $$r_l = r_{l-1} + d_l (k_l - 1)\, j_{l-1}, \qquad j_l = j_{l-1} s_l$$
#
# Two 3x3 convolutions see 5x5 and three see 7x7, with fewer weights than one 7x7 filter
# (VGG's argument); pooling and strides make the field grow faster. Below: the Keras MNIST
# model of the notes (conv 3x3, pool 2, conv 3x3, pool 2, conv 3x3).

# %%
mnist_layers = [(3, 1), (2, 2), (3, 1), (2, 2), (3, 1)]
mnist_names = ["conv1", "pool1", "conv2", "pool2", "conv3"]
table = viz.receptive_field_table(mnist_layers, mnist_names)
print(viz.format_receptive_field_table(table))
print("3x3 stacks:", [r.size for r in ops.receptive_field([3, 3, 3])], "| one 7x7 has",
      7 * 7, "weights per channel pair, three 3x3 have", 3 * 9)
viz.plot_receptive_field(mnist_layers, mnist_names)

# %% [markdown]
# **Checked by differentiation.** The receptive field is exactly the set of input pixels
# whose gradient is non-zero for one output unit. Running the same stack with `ops`
# (positive kernels, average pooling so that every pixel of a window counts) and taking
# the gradient of the centre unit of the last 3x3 map with respect to a 28x28 input gives
# an 18x18 square, as the table says. The gradient is larger in the middle: pixels near
# the centre reach the unit along more paths (the *effective* receptive field is smaller
# than the theoretical one).

# %%
def mnist_stack(x):
    k = jnp.ones((3, 3, 1, 1))
    x = ops.avg_pool(ops.conv(x, k), 2)
    x = ops.avg_pool(ops.conv(x, k), 2)
    return ops.conv(x, k)


out_shape = mnist_stack(jnp.zeros((1, 28, 28, 1))).shape
print("28x28 ->", out_shape[1:3])
grad = jax.grad(lambda x: mnist_stack(x)[0, 1, 1, 0])(jnp.zeros((1, 28, 28, 1)))[0, ..., 0]
rows_, cols_ = np.nonzero(np.asarray(grad))
extent = (int(rows_.max() - rows_.min() + 1), int(cols_.max() - cols_.min() + 1))
print("non-zero gradient region:", extent, "| table:", table[-1]["rf_size"])
assert extent == (table[-1]["rf_size"],) * 2
viz.plot_images(np.asarray(grad), titles=["d unit / d input"], cmap="magma", cell_inches=3.0)

# %% [markdown]
# Classic architectures, for scale: AlexNet's last pooling layer sees 195x195 pixels of a
# 227x227 image, VGG-16's 212x212 (the published numbers).

# %%
alexnet = [(11, 4), (3, 2), 5, (3, 2), 3, 3, 3, (3, 2)]
alexnet_names = ["conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5"]
vgg16 = [3, 3, (2, 2), 3, 3, (2, 2), 3, 3, 3, (2, 2), 3, 3, 3, (2, 2), 3, 3, 3, (2, 2)]
print("AlexNet pool5:", ops.receptive_field(alexnet)[-1])
print("VGG-16 pool5: ", ops.receptive_field(vgg16)[-1])
assert ops.receptive_field(alexnet)[-1].size == 195 and ops.receptive_field(vgg16)[-1].size == 212
viz.plot_receptive_field(alexnet, alexnet_names, title="AlexNet")

# %% [markdown]
# ## 8. Hand-crafted filters on real images
#
# Before learning filters, computer vision designed them by hand: a filter is a
# hypothesis about a local feature. Below, classic 3x3 filters applied to a real image
# ("same" padding keeps the size): vertical and horizontal edges (Sobel), a blur (box
# average), a sharpen filter (identity plus a Laplacian), and the notes' diagonal "angle"
# detector with 0.9 on the anti-diagonal and 0.1 elsewhere.

# %%
def find_data_dir():
    """`$CNNJAX_DATA_DIR` if set, else ../../shared/data (next to the repository), when it
    holds mnist.npz; None otherwise."""
    candidate = Path(os.environ.get("CNNJAX_DATA_DIR") or "../../shared/data")
    return candidate if (candidate / "mnist.npz").is_file() else None


DATA_DIR = find_data_dir()
if DATA_DIR is not None:
    with np.load(DATA_DIR / "mnist.npz") as archive:
        digits = archive["test_images"][:64].astype(np.float32) / 255.0
        digit_labels = archive["test_labels"][:64]
    label_names = [str(i) for i in range(10)]
    source_name = f"MNIST test images from {DATA_DIR}"
else:
    from cnnjax.data import get_source

    shapes = get_source("shapes", "test", image_size=28, channels=1)
    records = [shapes[i] for i in range(64)]
    digits = np.stack([r["image"][..., 0] for r in records]).astype(np.float32) / 255.0
    digit_labels = np.array([r["label"] for r in records])
    label_names = list(shapes.info.class_names)
    source_name = "the procedural 'shapes' data set (no MNIST archive found)"
print("images:", source_name, digits.shape)
viz.plot_images(digits[:16], titles=[label_names[y] for y in digit_labels[:16]], ncols=8)

# %%
filters = {
    "vertical edge": [[1, 0, -1], [2, 0, -2], [1, 0, -1]],
    "horizontal edge": [[1, 2, 1], [0, 0, 0], [-1, -2, -1]],
    "blur": np.full((3, 3), 1 / 9),
    "sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
    "diagonal": [[0.1, 0.1, 0.9], [0.1, 0.9, 0.1], [0.9, 0.1, 0.1]],
}
bank = jnp.stack([jnp.asarray(f, jnp.float32) for f in filters.values()], axis=-1)[:, :, None]
print("filter bank:", bank.shape, "(kh, kw, in, out)")
viz.plot_filters(bank, ncols=5, title="hand-crafted filters (grey = 0)")

# %%
example = digits[0]
responses = ops.conv(jnp.asarray(example)[None, ..., None], bank, padding="same")[0]
print("one image through the whole bank at once:", responses.shape)
viz.plot_images(
    np.concatenate([example[None], np.moveaxis(np.asarray(responses), -1, 0)]),
    titles=["input", *filters],
    ncols=6,
    cmap="RdBu_r",
    symmetric=True,  # white = 0, red = positive, blue = negative
    cell_inches=1.8,
)

# %% [markdown]
# A convolution stage, then a detector stage (ReLU), then a pooling stage: the typical
# layer of a CNN. The vertical-edge map keeps its positive half and is max-pooled to half
# the resolution.

# %%
edges = ops.conv(jnp.asarray(digits[:8])[..., None], bank[..., :1], padding="same")
stage = ops.max_pool(jax.nn.relu(edges), 2)
print(digits[:8].shape, "-> conv", edges.shape, "-> ReLU + max pool", stage.shape)
viz.plot_images([*digits[:4], *np.asarray(stage[:4, ..., 0])],
                titles=["input"] * 4 + ["conv-ReLU-pool"] * 4, ncols=4)

# %% [markdown]
# **A one-filter "network".** `NN(image) = max(conv2D(image, k))`: the strongest response
# of the diagonal filter anywhere in the image, whatever the position of the stroke
# (translation invariance from the global max). Used as printed, the filter (all weights
# positive) mostly measures how bright and thick a stroke is: every fully white 3x3 patch
# scores the maximum 3.3. Subtracting its mean makes a uniform patch score 0, and the
# ranking becomes about shape (on MNIST): single straight strokes that are upright or lean the other
# way (1s) score lowest, digits with "/"-like curved strokes highest. Nothing is trained yet; making the 9 values of the filter learnable
# parameters, fitted to minimise a loss, is what a CNN does (notebook 02).

# %%
diag = bank[..., 4:5]
zero_mean = diag - diag.mean()
images_in = jnp.asarray(digits)[..., None]
raw_scores = np.asarray(ops.global_max_pool(ops.conv(images_in, diag, padding="same"))[:, 0])
scores = np.asarray(ops.global_max_pool(ops.conv(images_in, zero_mean, padding="same"))[:, 0])
print(f"filter as printed: {np.sum(np.isclose(raw_scores, 3.3, atol=0.05))} of {len(digits)} "
      "images within 0.05 of the maximum 3.3")
order = np.argsort(scores)
picked = np.concatenate([order[:4], order[-4:]])
viz.plot_images(digits[picked],
                titles=[f"{label_names[digit_labels[i]]}: {scores[i]:.2f}" for i in picked],
                ncols=8, suptitle="zero-mean diagonal filter, max response: lowest 4, highest 4")
