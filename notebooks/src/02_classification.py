# %% [markdown]
# # 02 · Classification: the MNIST CNN of the lecture notes
#
# The Keras model of the notes, `simple_cnn` in the model zoo: conv 32 3x3 + ReLU, max
# pool 2, conv 64 3x3 + ReLU, max pool 2, conv 64 3x3 + ReLU, flatten, dense 64 + ReLU,
# dense 10. The notes end it with a softmax; here the model returns logits and the
# softmax lives in the cross-entropy loss (the numerically stable way).
#
# It is trained with the generic trainer `cnnjax.train.runner.loop.train_and_evaluate(config,
# workdir)`, which logs `metrics.jsonl`, keeps checkpoints and reports validation and test
# metrics. Then: training curves, the confusion matrix, misclassified examples, the learned
# first-layer filters and the feature maps of one digit, the model summary, and the
# parameter counts of the whole model zoo.
#
# Data: MNIST from `$CNNJAX_DATA_DIR` or `../../shared/data` when present, otherwise the
# procedural `shapes` data set (6 classes of geometric shapes, no download).
# `CNNJAX_NOTEBOOK_FAST=1` (CI) trains for 150 steps instead of 3 epochs.

# %%
import os
import tempfile
import time
from pathlib import Path

import jax
import matplotlib
import numpy as np

from cnnjax import data, models, viz
from cnnjax.checkpoint import CheckpointManager
from cnnjax.train.runner.config import default_config
from cnnjax.train.runner.components import build
from cnnjax.train.runner.loop import train_and_evaluate

# cnnjax.viz returns matplotlib Figures (built without pyplot); this shows them inline
%matplotlib inline
matplotlib.rcParams["figure.dpi"] = 80

FAST = os.environ.get("CNNJAX_NOTEBOOK_FAST", "0") not in ("", "0", "false", "False")


def find_data_dir():
    """`$CNNJAX_DATA_DIR` if set, else ../../shared/data (next to the repository), when it
    holds mnist.npz; None otherwise."""
    candidate = Path(os.environ.get("CNNJAX_DATA_DIR") or "../../shared/data")
    return candidate if (candidate / "mnist.npz").is_file() else None


DATA_DIR = find_data_dir()
DATASET = "mnist" if DATA_DIR is not None else "shapes"
print(f"data set: {DATASET} | data dir: {DATA_DIR} | fast mode: {FAST} | devices: {jax.devices()}")

# %% [markdown]
# ## 1. The run configuration
#
# One `ConfigDict` describes the run (every field is documented in
# `cnnjax.train.runner.config`). MNIST has no validation split of its own: `val_size` holds out
# training images (a seeded permutation, so the same ones every run). Adam with a cosine
# learning-rate decay; validation every `eval_every_steps`; the checkpoint with the best
# validation accuracy is kept.

# %%
config = default_config()
config.seed = 0
config.model = "simple_cnn"
config.dataset = DATASET
if DATASET == "mnist":
    config.data_dir = str(DATA_DIR)
    config.dataset_options = {"val_size": 1000 if FAST else 5000}
config.batch_size = 128
if FAST:
    config.num_train_steps = 150
    config.eval_every_steps = 50
    config.log_every_steps = 25
else:
    config.num_epochs = 3 if DATASET == "mnist" else 12
    config.eval_every_steps = 100
    config.log_every_steps = 50
config.optimizer.name = "adamw"
config.optimizer.learning_rate = 1e-3
config.schedule.name = "cosine"
config.keep_best = 1

WORKDIR = Path(os.environ.get("CNNJAX_NOTEBOOK_WORKDIR") or tempfile.mkdtemp(prefix="cnnjax_02_"))
print(config)

# %% [markdown]
# ## 2. Training
#
# The same call trains any model of the zoo on any data set of `cnnjax.data`; running it
# again on the same work directory would resume from the last checkpoint.

# %%
start = time.perf_counter()
summary = train_and_evaluate(config, WORKDIR)
print(f"trained {summary['step']} steps in {time.perf_counter() - start:.0f} s")
print("validation:", {k: round(v, 4) for k, v in summary["val"].items()})
print("test:      ", {k: round(v, 4) for k, v in summary["test"].items()})
print("work directory:", sorted(p.name for p in WORKDIR.iterdir()))

# %% [markdown]
# ## 3. Training curves
#
# Read back from `metrics.jsonl` (one JSON object per line: step, epoch, split and the
# metrics). Training metrics are averaged over the steps since the previous log line;
# validation metrics are computed on the whole held-out split.

# %%
records = viz.load_metrics(WORKDIR / "metrics.jsonl")
print(records[0])
viz.plot_training_curves(records, metrics=["loss", "accuracy", "learning_rate"], logy=["loss"])

# %% [markdown]
# ## 4. Predictions on the test set
#
# Restore the final checkpoint and run the model over the test split ourselves: the
# accuracy computed here from the predictions must equal the trainer's own test accuracy.

# %%
components = build(config)
model, info = components.model, components.info
with CheckpointManager(WORKDIR / "checkpoints", read_only=True) as manager:
    restored = manager.restore(components.init_state(), "latest")
state = restored.state
variables = {"params": state.params, **state.model_state}
print("restored step", restored.step, "| parameters:",
      f"{sum(p.size for p in jax.tree_util.tree_leaves(state.params)):,}")

test_source = data.get_source(config.dataset, "test", config.data_dir,
                              **dict(config.dataset_options))
predict = jax.jit(lambda v, x: model.apply(v, x))
logits, labels = [], []
batches = data.make_pipeline(test_source, batch_size=1000, train=False)
for batch in batches:
    keep = batch["valid"] > 0  # the last batch is padded to a full batch
    logits.append(np.asarray(predict(variables, batch["image"]))[keep])
    labels.append(batch["label"][keep])
batches.close()
logits, labels = np.concatenate(logits), np.concatenate(labels)
predictions = logits.argmax(axis=1)
accuracy = float(np.mean(predictions == labels))
print(f"{len(labels)} test images, accuracy {accuracy:.4f} "
      f"(trainer: {summary['test']['accuracy']:.4f})")
np.testing.assert_allclose(accuracy, summary["test"]["accuracy"], atol=1e-6)

# %% [markdown]
# ### Confusion matrix
#
# Row = true class, column = predicted class; the diagonal holds the correct predictions.

# %%
num_classes = info.num_classes
confusion = np.zeros((num_classes, num_classes), np.int64)
np.add.at(confusion, (labels, predictions), 1)
viz.plot_confusion_matrix(confusion, info.class_names)

# %% [markdown]
# ### Misclassified examples
#
# Title: true class -> predicted class (softmax probability of the prediction). Many of
# the mistakes are digits a person would hesitate over too.

# %%
probabilities = np.asarray(jax.nn.softmax(logits, axis=1))
wrong = np.flatnonzero(predictions != labels)
wrong = wrong[np.argsort(-probabilities[wrong, predictions[wrong]])][:16]
print(f"{np.sum(predictions != labels)} misclassified; the 16 most confident mistakes:")
names = info.class_names
viz.plot_images(
    np.stack([test_source[int(i)]["image"] for i in wrong]),
    titles=[f"{names[labels[i]]} -> {names[predictions[i]]} ({probabilities[i, predictions[i]]:.2f})"
            for i in wrong],
    ncols=8,
    cell_inches=1.4,
)

# %% [markdown]
# ## 5. What the network learned
#
# ### First-layer filters
#
# The 32 kernels of `conv1` (3x3, one input channel) before and after training, on one
# grey scale per figure (mid-grey = 0). Initialised at random, they become edge and
# stroke detectors, the learned counterparts of the hand-crafted filters of notebook 01.

# %%
initial = components.init_state().params["conv1"]["kernel"]
viz.plot_filters(initial, title="conv1 at initialisation")

# %%
viz.plot_filters(state.params["conv1"]["kernel"], title="conv1 after training")

# %% [markdown]
# ### Feature maps of one test image
#
# `model.apply(..., return_features=True)` also returns every intermediate map, in order.
# The first layer responds to strokes and edges at full resolution; after two poolings
# `conv3` holds 64 coarse 3x3 maps that the dense layers read.

# %%
example = next(iter(data.make_pipeline(test_source, batch_size=8, train=False)))["image"][:1]
_, features = model.apply(variables, example, return_features=True)
print({name: tuple(f.shape) for name, f in features.items()})
viz.plot_images([test_source[0]["image"]], titles=[f"test image 0: {names[labels[0]]}"],
                cell_inches=2.0)

# %%
viz.plot_feature_maps(features, "conv1", max_channels=32)

# %%
viz.plot_feature_maps(features, "conv2", max_channels=16)

# %% [markdown]
# ## 6. The model and the zoo
#
# `models.summary` lists every layer with its output shape and parameter count (shapes are
# traced with `jax.eval_shape`, so nothing is allocated). The conv layers hold few
# weights; the first dense layer, on the flattened 3x3x64 map, as many as the last conv.

# %%
print(models.summary(model, (1, *info.image_shape)))

# %% [markdown]
# Parameter counts of every model in the zoo, on the input each was designed for, next to
# the published counts (torchvision for AlexNet, VGG and ResNet with 1000 ImageNet
# classes; Keras for the notes' MNIST model; LeCun's LeNet-5 in its modern form).

# %%
published = {
    "simple_cnn": 93_322, "lenet5": 61_706, "alexnet": 61_100_840,
    "vgg11": 132_863_336, "vgg13": 133_047_848, "vgg16": 138_357_544, "vgg19": 143_667_240,
    "vgg11_bn": 132_868_840, "vgg13_bn": 133_053_736, "vgg16_bn": 138_365_992,
    "vgg19_bn": 143_678_248, "resnet18": 11_689_512, "resnet34": 21_797_672,
    "resnet50": 25_557_032, "resnet101": 44_549_160, "resnet152": 60_192_808,
}
inputs = {"simple_cnn": ((1, 28, 28, 1), 10), "lenet5": ((1, 32, 32, 1), 10),
          "cnn1d": ((1, 1000, 1), 5), "cnn3d": ((1, 16, 32, 32, 3), 10)}
print(f"{'model':14s} {'input':>20s} {'parameters':>14s} {'published':>14s}")
for name in models.list_models():
    if name.startswith("unet"):
        shape, classes = (1, 572, 572, 1), 2
    else:
        shape, classes = inputs.get(name, ((1, 224, 224, 3), 1000))
    count = models.summary(models.create(name, num_classes=classes), shape).total_params
    ref = published.get(name)
    mark = "" if ref is None else ("  ok" if ref == count else "  MISMATCH")
    print(f"{name:14s} {str(shape[1:]):>20s} {count:>14,d} {'' if ref is None else f'{ref:,d}':>14s}"
          f"{mark}")
    if ref is not None:
        assert count == ref, (name, count, ref)
