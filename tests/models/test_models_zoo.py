"""Model zoo: published parameter counts, output shapes, U-Net shape rules, registry, errors.

Everything here is shape-only (`jax.eval_shape`): even VGG-19 costs nothing.
"""

import collections

import jax
import jax.numpy as jnp
import pytest

import cnnjax.models as models
from cnnjax.models import unet_output_size


def _variables(model, shape):
    rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    return jax.eval_shape(model.init, rngs, jax.ShapeDtypeStruct(shape, jnp.float32))


def _n_params(model, shape):
    return sum(a.size for a in jax.tree.leaves(_variables(model, shape)["params"]))


def _out_shape(model, shape, **kwargs):
    variables = _variables(model, shape)
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    return jax.eval_shape(lambda v, x: model.apply(v, x, **kwargs), variables, x)


IMAGENET = (1, 224, 224, 3)

# Published counts: the issue / Keras (simple_cnn), LeCun's LeNet-5 arithmetic, torchvision
# model docs (alexnet, vgg*, resnet*), Ronneberger et al.'s U-Net (31,030,658).
PUBLISHED = [
    ("simple_cnn", {}, (1, 28, 28, 1), 93_322),
    ("lenet5", {}, (1, 32, 32, 1), 61_706),
    ("alexnet", {}, IMAGENET, 61_100_840),
    ("vgg11", {}, IMAGENET, 132_863_336),
    ("vgg13", {}, IMAGENET, 133_047_848),
    ("vgg16", {}, IMAGENET, 138_357_544),
    ("vgg19", {}, IMAGENET, 143_667_240),
    ("vgg11_bn", {}, IMAGENET, 132_868_840),
    ("vgg16_bn", {}, IMAGENET, 138_365_992),
    ("vgg19_bn", {}, IMAGENET, 143_678_248),
    ("resnet18", {}, IMAGENET, 11_689_512),
    ("resnet34", {}, IMAGENET, 21_797_672),
    ("resnet50", {}, IMAGENET, 25_557_032),
    ("resnet101", {}, IMAGENET, 44_549_160),
    ("resnet152", {}, IMAGENET, 60_192_808),
    ("unet_original", {}, (1, 572, 572, 1), 31_030_658),
    (
        "unet",
        dict(num_classes=2, depth=5, base_features=64, padding="valid", norm="none"),
        (1, 572, 572, 1),
        31_030_658,
    ),
]


@pytest.mark.parametrize(("name", "options", "shape", "expected"), PUBLISHED)
def test_published_parameter_counts(name, options, shape, expected):
    assert _n_params(models.create(name, **options), shape) == expected


def test_simple_cnn_count_from_keras_arithmetic():
    """Independent arithmetic of the notes' Keras model: (k*k*in + 1)*out per layer."""
    expected = (9 * 1 + 1) * 32 + (9 * 32 + 1) * 64 + (9 * 64 + 1) * 64
    expected += (3 * 3 * 64 + 1) * 64 + (64 + 1) * 10
    assert _n_params(models.create("simple_cnn"), (1, 28, 28, 1)) == expected


def test_resnet_options_change_structure_not_base_counts():
    base = _n_params(models.create("resnet18", num_classes=10), (1, 32, 32, 3))
    cifar = _n_params(models.create("resnet18", num_classes=10, stem="cifar"), (1, 32, 32, 3))
    # The CIFAR stem's 3x3 conv has 64*3*(49 - 9) fewer weights than the 7x7 one.
    assert base - cifar == 64 * 3 * (49 - 9)
    zero = models.create("resnet18", num_classes=10, zero_init_last_norm=True)
    assert _n_params(zero, (1, 32, 32, 3)) == base
    # Pre-activation: the stem norm stays, each block's last norm moves before the first
    # conv, projections lose their norm (3 of them: 64+128+256 channels... 2*(128+256+512)),
    # and a final norm (2*512) is added.
    pre = _n_params(models.create("resnet18", num_classes=10, preactivation=True), (1, 32, 32, 3))
    assert base - pre == 2 * (128 + 256 + 512) - 2 * 512


# One small input per registered model; big ones are shape-only, so any size is free.
SMALL_INPUTS = {
    "simple_cnn": ((2, 28, 28, 1), (2, 10)),
    "lenet5": ((2, 32, 32, 1), (2, 10)),
    "alexnet": ((2, 63, 63, 3), (2, 1000)),
    "alexnet_tiny": ((2, 63, 63, 3), (2, 10)),
    "cnn1d": ((2, 100, 1), (2, 5)),
    "cnn2d": ((2, 20, 20, 3), (2, 10)),
    "cnn3d": ((2, 8, 9, 10, 1), (2, 10)),
    "resnet18": ((2, 32, 32, 3), (2, 1000)),
    "resnet34": ((2, 32, 32, 3), (2, 1000)),
    "resnet50": ((2, 32, 32, 3), (2, 1000)),
    "resnet101": ((2, 32, 32, 3), (2, 1000)),
    "resnet152": ((2, 32, 32, 3), (2, 1000)),
    "resnet_tiny": ((2, 16, 16, 3), (2, 10)),
    "unet": ((2, 48, 40, 1), (2, 48, 40, 2)),
    "unet_original": ((1, 188, 188, 1), (1, 4, 4, 2)),
    "unet_tiny": ((2, 10, 12, 3), (2, 10, 12, 2)),
    **{f"unet_resnet{d}": ((1, 37, 50, 3), (1, 37, 50, 2)) for d in (18, 34, 50)},
    "vgg_tiny": ((2, 32, 32, 3), (2, 10)),
    **{f"vgg{d}{bn}": ((1, 32, 32, 3), (1, 1000)) for d in (11, 13, 16, 19) for bn in ("", "_bn")},
}


def test_every_registered_model_has_a_shape_test():
    assert set(models.list_models()) == set(SMALL_INPUTS)


@pytest.mark.parametrize("name", sorted(SMALL_INPUTS))
def test_output_shapes_and_features(name):
    in_shape, out_shape = SMALL_INPUTS[name]
    model = models.create(name)
    logits, feats = _out_shape(model, in_shape, return_features=True)
    assert logits.shape == out_shape
    assert isinstance(feats, dict) and feats
    for key, value in feats.items():
        assert value.shape[0] == in_shape[0], key
    # The plain call returns the logits alone.
    assert _out_shape(model, in_shape).shape == out_shape


def test_feature_names_in_order():
    _, feats = _out_shape(models.create("resnet18"), (1, 64, 64, 3), return_features=True)
    assert isinstance(feats, collections.OrderedDict)  # keeps its order through jit
    assert list(feats) == ["stem_act", "stem", "stage1", "stage2", "stage3", "stage4", "pool"]
    assert [feats[k].shape for k in feats] == [
        (1, 32, 32, 64), (1, 16, 16, 64), (1, 16, 16, 64), (1, 8, 8, 128), (1, 4, 4, 256),
        (1, 2, 2, 512), (1, 512),
    ]  # fmt: skip
    _, feats = _out_shape(models.create("unet_tiny", depth=3), (1, 16, 16, 1), return_features=True)
    assert list(feats) == ["enc1", "enc2", "enc3", "dec2", "dec1"]


# --- U-Net shape rules ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "depth", "expected"),
    [
        (572, 5, 388),  # the paper's figure 1
        (188, 5, 4),
        (20, 2, 4),  # 20 -4-> 16 /2-> 8 -4-> 4 x2-> 8 -4-> 4
        (21, 2, 4),  # the pool floors 17 to 8
        (13, 1, 9),  # depth 1: one double conv
        (44, 3, 4),  # 40 -> 20 -> 16 -> 8 -> 4 -> 8 -> 4 -> 8 -> 4
    ],
)
def test_unet_valid_output_size(size, depth, expected):
    assert unet_output_size(size, depth, "valid") == expected


@pytest.mark.parametrize(
    ("spatial_dims", "in_spatial", "padding", "out_spatial"),
    [
        (1, (44,), "valid", (4,)),
        (2, (44, 48), "valid", (4, 8)),  # 48: 44, 22, 18, 9, 5, 10, 6, 12, 8
        (3, (44, 48, 44), "valid", (4, 8, 4)),
        (1, (37,), "same", (37,)),
        (2, (16, 9), "same", (16, 9)),
        (3, (8, 5, 6), "same", (8, 5, 6)),
    ],
)
def test_unet_shapes_1d_2d_3d(spatial_dims, in_spatial, padding, out_spatial):
    model = models.create(
        "unet",
        num_classes=3,
        spatial_dims=spatial_dims,
        depth=3,
        base_features=4,
        padding=padding,
    )
    out = _out_shape(model, (2, *in_spatial, 2))
    assert out.shape == (2, *out_spatial, 3)


def test_unet_resize_upsampling_shapes():
    model = models.create("unet_tiny", upsample="resize", padding="valid", num_classes=4)
    assert _out_shape(model, (1, 21, 20, 1)).shape == (1, 4, 4, 4)


def test_unet_too_small_inputs_name_the_smallest_size():
    # By hand: the 4 decoder steps n -> 2n - 4 stay >= 1 only from n = 4 at the bottom, so
    # 4 + 4 = 8 -> 16 + 4 = 20 -> 40 + 4 = 44 -> 88 + 4 = 92 -> 184 + 4 = 188.
    with pytest.raises(ValueError, match="smallest that works is 188"):
        unet_output_size(187, 5, "valid")
    assert unet_output_size(188, 5, "valid") == 4
    model = models.create("unet_original")
    with pytest.raises(ValueError, match="too small"):
        _out_shape(model, (1, 139, 200, 1))
    with pytest.raises(ValueError, match="smallest that works is 16"):
        _out_shape(models.create("unet", depth=5, base_features=4), (1, 15, 32, 1))


# --- registry --------------------------------------------------------------------------------


def test_registry_create_and_errors():
    model = models.create("resnet18", num_classes=7, stem="cifar")
    assert (model.num_classes, model.stem, tuple(model.stage_sizes)) == (7, "cifar", (2, 2, 2, 2))
    with pytest.raises(ValueError, match=r"unknown model 'resnet19'.*resnet18"):
        models.create("resnet19")
    with pytest.raises(TypeError, match=r"unknown option.*stemm.*valid options:.*stem"):
        models.create("resnet18", stemm="cifar")
    with pytest.raises(ValueError, match="num_classes"):
        models.create("resnet18", num_classes=-1)
    with pytest.raises(ValueError, match="already registered"):
        models.register("resnet18")(models.ResNet)
    assert models.model_options("resnet_tiny")["stage_sizes"] == (1, 1)


def test_register_custom_factory():
    name = "test_custom_model_zoo"

    @models.register(name)
    def factory(num_classes=3):
        return models.SimpleCNN(num_classes=num_classes, widths=(4, 4, 4), hidden=8)

    try:
        assert name in models.list_models()
        assert _out_shape(models.create(name, num_classes=5), (1, 28, 28, 1)).shape == (1, 5)
    finally:
        from cnnjax.models import registry

        del registry.MODELS._entries[name]


@pytest.mark.parametrize("name", sorted(SMALL_INPUTS))
def test_common_fields_for_the_trainer(name):
    """Every model has `dtype`/`param_dtype`; those with a `norm` option (batch norm possible)
    also have the `axis_name` the trainer sets for synchronised batch statistics."""
    model = models.create(name)
    clone = model.clone(dtype=jnp.bfloat16)
    assert clone.dtype == jnp.bfloat16
    assert model.param_dtype == jnp.float32
    options = models.model_options(name)
    assert ("axis_name" in options) == ("norm" in options)
    if "norm" in options:
        assert model.clone(axis_name="data").axis_name == "data"


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("resnet18", dict(stem="foo"), r"resnet: stem must be one of 'imagenet', 'cifar'; got"),
        ("resnet18", dict(norm="foo"), r"resnet: norm must be one of 'batch', .*; got 'foo'"),
        ("resnet18", dict(stage_sizes=(2, 0)), r"resnet: stage_sizes must be a non-empty"),
        ("unet", dict(depth=0), r"unet: depth must be >= 1, got 0"),
        ("unet_tiny", dict(upsample="deconv"), r"unet: upsample must be one of"),
        ("cnn2d", dict(dropout=1.0), r"convnet: dropout must be a number in \[0, 1\), got 1.0"),
        ("simple_cnn", dict(widths=(8, 8)), r"simple_cnn: widths must have 3 entries"),
        ("lenet5", dict(pool="min"), r"lenet5: pool must be one of 'max', 'avg'; got 'min'"),
        ("vgg_tiny", dict(hidden=0), r"vgg: hidden must be >= 1, got 0"),
        ("alexnet_tiny", dict(width=0), r"alexnet: width must be >= 1, got 0"),
    ],
)
def test_bad_options_fail_at_create(name, options, message):
    """Option values are checked when the model is created, before any `init`."""
    with pytest.raises(ValueError, match=message):
        models.create(name, **options)


def test_bad_option_type_fails_at_create():
    with pytest.raises(TypeError, match=r"unet: base_features must be an int, got str '8'"):
        models.create("unet_tiny", base_features="8")


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "min_size"),
    [("simple_cnn", 18), ("lenet5", 16), ("alexnet_tiny", 63), ("vgg_tiny", 32), ("cnn3d", 4)],
)
def test_input_too_small(name, min_size):
    model = models.create(name)
    channels = 1
    spatial = (min_size,) * (3 if name == "cnn3d" else 2)
    _out_shape(model, (1, *spatial, channels))  # the smallest size works
    small = (min_size - 1, *spatial[1:])
    with pytest.raises(ValueError, match=f">= {min_size}"):
        _out_shape(model, (1, *small, channels))


def test_bad_inputs_and_options():
    with pytest.raises(ValueError, match="rank 4"):
        _out_shape(models.create("resnet_tiny"), (2, 16, 16))
    with pytest.raises(TypeError, match="floating"):
        model = models.create("simple_cnn")
        model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1), jnp.uint8))
    with pytest.raises(ValueError, match="norm must be one of 'batch', 'group'"):
        _out_shape(models.create("resnet_tiny", norm="batchnorm"), (1, 8, 8, 3))
    with pytest.raises(ValueError, match="Number of groups"):
        _out_shape(models.create("resnet_tiny", norm="group", num_groups=3), (1, 8, 8, 3))
    with pytest.raises(ValueError, match="block must be"):
        _out_shape(models.create("resnet_tiny", block="basicc"), (1, 8, 8, 3))
    with pytest.raises(ValueError, match="upsample must be"):
        _out_shape(models.create("unet_tiny", upsample="deconv"), (1, 8, 8, 3))
    with pytest.raises(ValueError, match="padding must be"):
        _out_shape(models.create("unet_tiny", padding="full"), (1, 8, 8, 3))
