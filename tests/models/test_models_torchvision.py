"""torchvision weights in and out: logits equal PyTorch's, round trips exact, new heads,
error reports, file formats, and the U-Net's ResNet encoder.

The references are torchvision's models (or `torch_reference`'s restatement of them where
torchvision does not import) with random weights AND random batch-norm statistics and affine
parameters, in eval mode. Fast suite: 224x224 for resnet18, vgg11_bn and alexnet, and an odd
non-square 97x67 for one of each family's block kinds (resnet18, resnet50, vgg11, vgg11_bn,
alexnet); the rest of the matrix (every architecture at 224x224, 193x161 and 97x67) is slow.
"""

import functools
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

import torch_reference as ref  # noqa: E402  (tests/models is on sys.path under pytest)

import cnnjax.models as models  # noqa: E402

ARCHS = list(ref.PUBLISHED_PARAMS)
ODD = (97, 67)  # non-square, odd; VGG's last map is 3x2, AlexNet's 2x1: both pool adaptively
FULL_ODD = (193, 161)
FAST_224 = ("resnet18", "vgg11_bn", "alexnet")
FAST_ODD = ("resnet18", "resnet50", "vgg11", "vgg11_bn", "alexnet")
LOGGER = "cnnjax.models.pretrained"


@functools.lru_cache(maxsize=1)
def _reference(name: str):
    """(torch model, its state dict as NumPy arrays), random weights and statistics."""
    model = ref.randomize_(ref.reference_model(name), seed=len(name))
    return model, {k: v.numpy() for k, v in model.state_dict().items()}


def _without_counters(state):
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, 3, h, w), dtype=np.float32)


def _torch(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def _jax(model, variables, x: np.ndarray, **kwargs):
    apply = jax.jit(functools.partial(model.apply, **kwargs))
    return jax.device_get(apply(variables, jnp.asarray(x.transpose(0, 2, 3, 1))))


def _relative_error(got, want) -> float:
    return float(np.abs(np.asarray(got) - want).max() / np.abs(want).max())


def _assert_bit_equal(a, b, what=""):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype, what
    assert a.tobytes() == b.tobytes(), what


def _check_parity(name: str, sizes) -> None:
    """Logits at each size equal PyTorch's (max error < 1e-4 of the largest logit), and
    `to_torchvision` gives the state dict back bit for bit."""
    torch_model, state = _reference(name)
    model, variables = models.from_torchvision(name, state)
    for h, w in sizes:
        x = _image(h, w)
        want = _torch(torch_model, x)
        got = _jax(model, variables, x)
        assert got.shape == want.shape == (1, 1000)
        assert _relative_error(got, want) < 1e-4, (name, (h, w), _relative_error(got, want))
    back = models.to_torchvision(name, variables)
    expected = _without_counters(state)
    assert set(back) == set(expected)
    for key, value in expected.items():
        _assert_bit_equal(back[key], value, key)


@pytest.mark.parametrize("name", ARCHS)
def test_reference_models_have_published_parameter_counts(name):
    with torch.device("meta"):
        model = ref.reference_model(name)
    assert sum(p.numel() for p in model.parameters()) == ref.PUBLISHED_PARAMS[name]


_FAST = [(n, [(224, 224), ODD] if n in FAST_224 else [ODD]) for n in ARCHS if n in FAST_ODD]
_SLOW = [(n, ([] if n in FAST_224 else [(224, 224)]) + [FULL_ODD]
          + ([] if n in FAST_ODD else [ODD])) for n in ARCHS]


@pytest.mark.parametrize(("name", "sizes"), _FAST, ids=[n for n, _ in _FAST])
def test_logits_match_pytorch(name, sizes):
    _check_parity(name, sizes)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "sizes"), _SLOW, ids=[n for n, _ in _SLOW])
def test_logits_match_pytorch_full_matrix(name, sizes):
    _check_parity(name, sizes)


def test_file_formats_load_the_same(tmp_path):
    torch_model, state = _reference("resnet18")
    _, from_dict = models.from_torchvision("resnet18", state)
    torch.save(torch_model.state_dict(), tmp_path / "r.pth")
    torch.save({"state_dict": torch_model.state_dict()}, tmp_path / "wrapped.pt")
    safetensors_numpy.save_file(_without_counters(state), str(tmp_path / "r.safetensors"))
    np.savez(tmp_path / "r.npz", **state)
    sources = [tmp_path / f for f in ("r.pth", "wrapped.pt", "r.safetensors", "r.npz")]
    sources += [str(tmp_path / "r.npz"), dict(torch_model.named_parameters()) | dict(
        torch_model.named_buffers())]  # fmt: skip
    for source in sources:
        _, variables = models.from_torchvision("resnet18", source)
        jax.tree.map(_assert_bit_equal, variables, from_dict)
    assert set(from_dict) == {"params", "batch_stats"}


def test_new_head_is_fresh_seeded_and_keeps_everything_else(caplog):
    _, state = _reference("resnet18")
    _, full = models.from_torchvision("resnet18", state)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        model, new = models.from_torchvision("resnet18", state, num_classes=10, rng=3)
    records = [r for r in caplog.records if r.name == LOGGER]
    assert len(records) == 1
    assert "re-initialised head" in records[0].getMessage()
    assert "fc.weight" in records[0].getMessage() and "fc.bias" in records[0].getMessage()
    assert model.num_classes == 10 and new["params"]["head"]["kernel"].shape == (512, 10)
    for collection in ("params", "batch_stats"):
        rest = {k: v for k, v in new[collection].items() if k != "head"}
        jax.tree.map(_assert_bit_equal, rest, {k: full[collection][k] for k in rest})
    head = np.asarray(new["params"]["head"]["kernel"])
    _, again = models.from_torchvision("resnet18", state, num_classes=10, rng=3)
    _, other = models.from_torchvision("resnet18", state, num_classes=10, rng=jax.random.key(4))
    _assert_bit_equal(again["params"]["head"]["kernel"], head)
    assert not np.array_equal(np.asarray(other["params"]["head"]["kernel"]), head)
    assert not np.array_equal(head, state["fc.weight"][:10].T)  # fresh, not the file's rows
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        models.from_torchvision("resnet18", state, num_classes=1000)
    assert not [r for r in caplog.records if r.name == LOGGER]  # nothing re-initialised


@pytest.mark.parametrize(
    ("name", "head", "features"), [("resnet18", "fc", 512), ("alexnet", "classifier.6", 4096)]
)
def test_no_head_returns_what_the_head_would_see(name, head, features):
    torch_model, state = _reference(name)
    model, variables = models.from_torchvision(name, state, num_classes=0)
    assert "head" not in variables["params"]
    seen = []
    hook = dict(torch_model.named_modules())[head].register_forward_hook(
        lambda module, inputs, output: seen.append(inputs[0].numpy())
    )
    try:
        _torch(torch_model, x := _image(*ODD, seed=1))
    finally:
        hook.remove()
    got = _jax(model, variables, x)
    assert got.shape == seen[0].shape == (1, features)
    assert _relative_error(got, seen[0]) < 1e-4


@pytest.mark.parametrize(
    ("name", "shape", "features"),
    [
        ("resnet18", (1, 64, 64, 3), 512),
        ("resnet50", (1, 64, 64, 3), 2048),
        ("vgg_tiny", (1, 32, 32, 3), 64),
        ("alexnet_tiny", (1, 63, 63, 3), 64),
        ("simple_cnn", (1, 28, 28, 1), 64),
        ("lenet5", (1, 32, 32, 1), 84),
        ("cnn2d", (1, 16, 16, 1), 128),
    ],
)
def test_create_without_head(name, shape, features):
    model = models.create(name, num_classes=0)
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    assert not {"head", "logits"} & set(variables["params"])
    out, feats = jax.eval_shape(lambda v, x: model.apply(v, x, return_features=True), variables, x)
    assert out.shape == (1, features)
    assert out.shape == list(feats.values())[-1].shape  # the last feature, unchanged


def test_mismatches_are_reported_together():
    _, state = _reference("resnet18")
    broken = dict(state)
    del broken["layer1.0.conv1.weight"]
    broken["layer9.0.conv1.weight"] = np.zeros((3, 3), np.float32)
    broken["bn1.running_var"] = np.ones(65, np.float32)
    with pytest.raises(ValueError) as info:
        models.from_torchvision("resnet18", broken)
    message = str(info.value)
    assert "1 missing, 1 unexpected, 1 shape mismatches" in message
    assert "missing layer1.0.conv1.weight: expected shape (64, 64, 3, 3)" in message
    assert "unexpected layer9.0.conv1.weight: found shape (3, 3)" in message
    assert "shape mismatch bn1.running_var: expected (64,), found (65,)" in message
    # The head kept at the file's size must fit too.
    with pytest.raises(ValueError, match=r"fc.weight: expected \(1000, 512\), found \(1000, 3\)"):
        models.from_torchvision("resnet18", {**state, "fc.weight": np.zeros((1000, 3))})


def test_bad_arguments(tmp_path):
    _, state = _reference("resnet18")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "pickled_model.pth")
    with pytest.raises(ValueError, match="not a weights-only state dict"):
        models.from_torchvision("resnet18", tmp_path / "pickled_model.pth")
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(TypeError, match="expected a state dict"):
        models.from_torchvision("resnet18", tmp_path / "list.pt")
    with pytest.raises(TypeError, match="weights"):
        models.from_torchvision("resnet18", 42)
    with pytest.raises(ValueError, match=r"weights: expected a file ending in .*\.onnx"):
        models.from_torchvision("resnet18", "model.onnx")
    with pytest.raises(ValueError, match="no such file"):
        models.from_torchvision("resnet18", "missing.safetensors")
    with pytest.raises(ValueError, match=r"torchvision weights exist for .*got a LeNet5"):
        models.from_torchvision("lenet5", state)
    with pytest.raises(ValueError, match="unknown model"):
        models.from_torchvision("resnet19", state)
    with pytest.raises(TypeError, match="rng"):
        models.from_torchvision("resnet18", state, num_classes=3, rng="seed")
    with pytest.raises(TypeError, match="name_or_model"):
        models.to_torchvision(3, {"params": {}})
    with pytest.raises(ValueError, match="variables"):
        models.to_torchvision("resnet18", {})


def test_unet_resnet_encoder_is_torchvisions_resnet(caplog):
    torch_model, state = _reference("resnet34")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        model, variables = models.from_torchvision("unet_resnet34", state, num_classes=3)
    (record,) = [r for r in caplog.records if r.name == LOGGER]
    message = record.getMessage()
    assert "decoder1" in message and "up5" in message and "head" in message
    assert "dropped from the weights: fc.bias, fc.weight" in message
    h, w = 75, 53
    x = _image(h, w, seed=2)
    logits, feats = _jax(model, variables, x, return_features=True)
    assert logits.shape == (1, h, w, 3)
    with torch.no_grad():
        stages = ref.resnet_stages(torch_model, torch.from_numpy(x))
    for i, want in enumerate(stages, start=1):
        got = feats[f"encoder_stage{i}"]
        want = want.numpy().transpose(0, 2, 3, 1)
        assert got.shape == want.shape and _relative_error(got, want) < 1e-5, i
    back = models.to_torchvision(model, variables)
    assert set(back) == {k for k in _without_counters(state) if not k.startswith("fc.")}
    for key, value in back.items():
        _assert_bit_equal(value, state[key], key)


@pytest.mark.parametrize("name", ["unet_resnet18", "unet_resnet50"])
@pytest.mark.parametrize("shape", [(2, 64, 64, 3), (1, 37, 50, 3), (1, 1, 3, 3)])
def test_unet_resnet_output_has_input_size(name, shape):
    model = models.create(name, num_classes=4)
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    assert "head" not in variables["params"]["encoder"]
    out, _ = jax.eval_shape(
        lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]), variables, x
    )
    assert out.shape == (*shape[:3], 4)


def test_exported_weights_load_into_pytorch_and_give_the_same_logits():
    _, state = _reference("resnet18")
    model, variables = models.from_torchvision("resnet18", state, num_classes=10, rng=1)
    exported = models.to_torchvision(model, variables)
    torch_model = ref.reference_model("resnet18", num_classes=10).eval()
    torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in exported.items()})
    x = _image(*ODD, seed=3)
    want = _torch(torch_model, x)
    assert _relative_error(_jax(model, variables, x), want) < 1e-4
