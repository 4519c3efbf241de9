# %% [markdown]
# # 04 · Transfer learning: reuse the features, slice off the head
#
# The lecture notes end their CNN story here: *"What if we spend $1 million training a
# cat/dog classifier, then realise we actually want to classify lions and wolves?"* The
# features a network learns on one task (edges, strokes, textures) are relevant to other
# image tasks, so we **slice off the final, task-specific layer and reuse the feature
# layers**. The notes load an ImageNet ResNet-18 with
# `torch.hub.load('pytorch/vision', 'resnet18', pretrained=True)`; cnnjax reads the same
# torchvision file with `cnnjax.models.from_torchvision`.
#
# This notebook:
#
# 0. gets a pretrained network: a torchvision weights file from `$CNNJAX_WEIGHTS` when given
#    (e.g. `resnet18-f37072fd.pth`, used on CIFAR-10 photographs), otherwise the notes' MNIST
#    CNN (`simple_cnn`) trained **here** on MNIST digits for a short time;
# 1. slices off its head (`models.create(name, num_classes=0)` returns the pooled features)
#    and trains a **linear probe** (logistic regression, Optax) on the frozen features of a
#    new task with few labels: Fashion-MNIST with 1,000 labelled images;
# 2. **fine-tunes** the whole network from the pretrained weights (new head) and
# 3. trains the same network **from scratch** on the same 1,000 labels;
# 4. compares the three (table and curves) and projects the features to 2-D (PCA) before
#    and after fine-tuning, coloured by class.
#
# Data from `$CNNJAX_DATA_DIR` or `../../shared/data`; without it the procedural `shapes`
# data set stands in for both tasks (so it runs anywhere). `CNNJAX_NOTEBOOK_FAST=1` (CI)
# takes a few dozen steps per run instead of hundreds.

# %%
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
from matplotlib.figure import Figure

from cnnjax import data, models, train, viz

# cnnjax.viz returns matplotlib Figures (built without pyplot); this shows them inline
%matplotlib inline
matplotlib.rcParams["figure.dpi"] = 80

FAST = os.environ.get("CNNJAX_NOTEBOOK_FAST", "0") not in ("", "0", "false", "False")
WEIGHTS = os.environ.get("CNNJAX_WEIGHTS") or None  # a torchvision resnet18 file, optional


def find_data_dir():
    """`$CNNJAX_DATA_DIR` if set, else ../../shared/data, when it holds the MNIST archives."""
    candidate = Path(os.environ.get("CNNJAX_DATA_DIR") or "../../shared/data")
    ok = all((candidate / f).is_file() for f in ("mnist.npz", "fashion_mnist.npz"))
    return candidate if ok else None


DATA_DIR = find_data_dir()
NUM_LABELLED = 1000  # the new task's labelled training images
if WEIGHTS is not None:
    BACKBONE = "resnet18"  # ImageNet weights from the file
    HAS_CIFAR = DATA_DIR is not None and (DATA_DIR / "cifar10_jpg_test.npz").is_file()
    TARGET = "cifar10" if HAS_CIFAR else ("fashion_mnist" if DATA_DIR else "shapes")
    SOURCE_TASK = "ImageNet (from the weights file)"
else:
    BACKBONE = "simple_cnn"
    TARGET = "fashion_mnist" if DATA_DIR is not None else "shapes"
    SOURCE_TASK = "mnist" if DATA_DIR is not None else "shapes"
HEAD = "head" if BACKBONE == "resnet18" else "logits"  # the zoo's name of the last layer
STEPS = {"pretrain": 60, "tune": 40, "probe": 100, "eval_every": 20} if FAST else {
    "pretrain": 900, "tune": 500, "probe": 500, "eval_every": 100}
NUM_TEST = 1000 if FAST else None  # None: the whole test split
print(f"backbone: {BACKBONE} pretrained on {SOURCE_TASK} | new task: {TARGET} with "
      f"{NUM_LABELLED} labels | data dir: {DATA_DIR} | fast: {FAST} | {jax.devices()}")

# %% [markdown]
# ## Helpers: arrays, a short training loop, accuracy
#
# The data sets are small, so they are held as normalised float32 arrays (`(N, H, W, C)`,
# channels last). Training uses the library's pieces directly: `train.create_train_state`,
# `train.make_optimizer`, `train.make_train_step` with the `classification` task (softmax
# cross-entropy on logits). Every `eval_every` steps the test accuracy is recorded, as a
# record `{"step", "split", "accuracy"}` that `viz.plot_training_curves` draws.

# %%
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def load_arrays(name, split, *, limit=None, **options):
    """(images (N, H, W, C) float32 normalised, labels (N,) int32, class names)."""
    if name == "shapes":
        options = {"channels": 1, "image_size": 28, **options}
    source = data.get_source(name, split, DATA_DIR, **options)
    n = len(source) if limit is None else min(limit, len(source))
    if name == "fashion_mnist" and split == "test" and limit is not None:
        order = np.random.default_rng(0).permutation(len(source))[:n]  # stored by class
    else:
        order = np.arange(n)
    records = [source[int(i)] for i in order]
    x = np.stack([r["image"] for r in records]).astype(np.float32) / 255.0
    y = np.array([r["label"] for r in records], np.int32)
    if WEIGHTS is not None:  # ImageNet weights: RGB at ImageNet's statistics, >= 64 pixels
        x = np.repeat(x, 3 // x.shape[-1], axis=-1)
        x = (x - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
        x = np.asarray(jax.image.resize(x, (len(x), 64, 64, 3), "bilinear"))
    else:
        info = source.info
        x = (x - np.array(info.mean, np.float32)) / np.array(info.std, np.float32)
    return x, y, source.info.class_names


_APPLY = {}  # one compiled eval-mode apply per model


def batched_apply(model, variables, x, batch_size=500):
    """`model.apply` in eval mode over `x` in batches (compiled once per model and shape)."""
    fn = _APPLY.setdefault(id(model), jax.jit(model.apply))
    return np.concatenate([np.asarray(fn(variables, x[i:i + batch_size]))
                           for i in range(0, len(x), batch_size)])


def accuracy(model, variables, x, y):
    return float(np.mean(batched_apply(model, variables, x).argmax(-1) == y))


_STEPS = {}


def fit(model, x, y, test, *, steps, learning_rate, init=None, seed=0, batch_size=64):
    """Trains `model` on (x, y) with Adam and a cosine decay; `init` replaces the fresh
    variables where given (pretrained weights). Returns (variables, test-accuracy records)."""
    tx = train.make_optimizer({"name": "adam", "learning_rate": learning_rate,
                               "schedule": "cosine", "total_steps": steps})
    state = train.create_train_state(model, tx, seed, (batch_size, *x.shape[1:]))
    if init is not None:
        init = jax.tree.map(jnp.array, init)  # copies: the step donates (reuses) its input
        params, rest = init["params"], {k: v for k, v in init.items() if k != "params"}
        state = state.replace(params=params, model_state=rest, opt_state=tx.init(params))
    key = (id(model), learning_rate, steps)  # same model and optimizer: reuse the compiled step
    step_fn = _STEPS.setdefault(key, train.make_train_step(model, train.classification(), tx))
    rng, records = np.random.default_rng(seed), []
    order = rng.permutation(len(x))
    for step in range(1, steps + 1):
        if len(order) < batch_size:
            order = np.concatenate([order, rng.permutation(len(x))])
        idx, order = order[:batch_size], order[batch_size:]
        state, _ = step_fn(state, {"image": x[idx], "label": y[idx]})
        if step % STEPS["eval_every"] == 0 or step == steps:
            variables = {"params": state.params, **state.model_state}
            records.append({"step": step, "split": "test",
                            "accuracy": accuracy(model, variables, *test)})
    return {"params": state.params, **state.model_state}, records

# %% [markdown]
# ## 0. A pretrained network
#
# With `$CNNJAX_WEIGHTS` the network is torchvision's ResNet-18 with the file's ImageNet
# weights, exactly as the notes load it (`from_torchvision` converts the layouts: OIHW
# kernels to HWIO, batch-norm running statistics into `batch_stats`). Without it we make our
# own "expensive" network: the notes' MNIST CNN trained on the 60,000 MNIST digits (the
# `shapes` images without data). Either way the pretraining task is not the new task.

# %%
start = time.perf_counter()
if WEIGHTS is not None:
    pretrained_model, pretrained = models.from_torchvision(BACKBONE, WEIGHTS)
    print(f"loaded {WEIGHTS}: head of {pretrained['params'][HEAD]['kernel'].shape[-1]} classes")
else:
    x_src, y_src, src_names = load_arrays(SOURCE_TASK, "train", limit=5000 if FAST else None)
    x_src_test, y_src_test, _ = load_arrays(SOURCE_TASK, "test", limit=NUM_TEST)
    pretrained_model = models.create(BACKBONE, num_classes=len(src_names))
    pretrained, pretrain_curve = fit(pretrained_model, x_src, y_src, (x_src_test, y_src_test),
                                     steps=STEPS["pretrain"], learning_rate=1e-3, batch_size=128)
    print(f"pretrained on {len(x_src)} {SOURCE_TASK} images for {STEPS['pretrain']} steps in "
          f"{time.perf_counter() - start:.0f} s: {SOURCE_TASK} test accuracy "
          f"{pretrain_curve[-1]['accuracy']:.4f}")
print(models.summary(pretrained_model, (1, 64, 64, 3) if WEIGHTS else (1, 28, 28, 1)))

# %% [markdown]
# ## 1. The new task, with few labels
#
# `data.get_source(..., num_labelled=1000, subset_seed=0)` keeps a seeded, class-stratified
# subset of the training split: 100 images per class. The test split is untouched.

# %%
target_options = {"num_labelled": NUM_LABELLED, "subset_seed": 0}
if TARGET == "shapes":
    target_options["seed"] = 1  # other scenes than the pretraining ones
x_train, y_train, class_names = load_arrays(TARGET, "train", **target_options)
x_test, y_test, _ = load_arrays(TARGET, "test", limit=NUM_TEST,
                                **({"seed": 1} if TARGET == "shapes" else {}))
test = (x_test, y_test)
num_classes = len(class_names)
print(f"{TARGET}: {len(x_train)} labelled training images "
      f"({np.bincount(y_train, minlength=num_classes).tolist()} per class), "
      f"{len(x_test)} test images, classes {list(class_names)}")
shown = np.concatenate([np.flatnonzero(y_train == c)[:2] for c in range(num_classes)])
lo = x_train[shown].min(axis=(1, 2, 3), keepdims=True)
hi = x_train[shown].max(axis=(1, 2, 3), keepdims=True)
viz.plot_images((x_train[shown] - lo) / (hi - lo),  # each image rescaled to [0, 1] for display
                titles=[class_names[y_train[i]] for i in shown], ncols=10, cell_inches=1.2)

# %% [markdown]
# ## 2. Slice off the head: feature extraction and a linear probe
#
# `models.create(name, num_classes=0)` builds the same network without its last layer; it
# returns the pooled features (64 values of `dense1` for `simple_cnn`, 512 for ResNet-18).
# The pretrained variables minus the head fit it as they are. The features are computed
# once; a logistic regression (one dense layer, softmax cross-entropy, Adam through Optax)
# is trained on them with the backbone frozen.

# %%
feature_model = models.create(BACKBONE, num_classes=0)
backbone = {"params": {k: v for k, v in pretrained["params"].items() if k != HEAD},
            **{k: v for k, v in pretrained.items() if k != "params"}}
f_train = batched_apply(feature_model, backbone, x_train)
f_test = batched_apply(feature_model, backbone, x_test)
print(f"removed {HEAD!r}; features: train {f_train.shape}, test {f_test.shape}")

# the reference probe needs no convnet: standardise the features, fit W, b by Adam
mu, sigma = f_train.mean(0), f_train.std(0) + 1e-6


def probe_loss(wb, f, y):
    logits = ((f - mu) / sigma) @ wb["w"] + wb["b"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean() + \
        1e-4 * jnp.sum(wb["w"] ** 2)


probe_tx = optax.adam(1e-2)


@jax.jit
def probe_step(wb, opt_state):
    grads = jax.grad(probe_loss)(wb, f_train, y_train)
    updates, opt_state = probe_tx.update(grads, opt_state)
    return optax.apply_updates(wb, updates), opt_state


wb = {"w": jnp.zeros((f_train.shape[1], num_classes)), "b": jnp.zeros(num_classes)}
opt_state, probe_curve = probe_tx.init(wb), []
for step in range(1, STEPS["probe"] + 1):
    wb, opt_state = probe_step(wb, opt_state)
    if step % STEPS["eval_every"] == 0 or step == STEPS["probe"]:
        pred = (((f_test - mu) / sigma) @ np.asarray(wb["w"]) + np.asarray(wb["b"])).argmax(-1)
        probe_curve.append({"step": step, "split": "test", "accuracy": float(np.mean(pred == y_test))})
train_pred = (((f_train - mu) / sigma) @ np.asarray(wb["w"]) + np.asarray(wb["b"])).argmax(-1)
print(f"linear probe: train accuracy {np.mean(train_pred == y_train):.4f}, "
      f"test accuracy {probe_curve[-1]['accuracy']:.4f}")

# %% [markdown]
# ## 3. Fine-tuning vs training from scratch
#
# Fine-tuning keeps every pretrained parameter as the starting point and puts a **fresh
# head** for the new classes on top (`num_classes=10`; the old head is dropped, as
# `from_torchvision(..., num_classes=10)` does for a file). All layers are then trained on the
# 1,000 labels. From scratch, the same network starts at random. Both runs see the same
# batches with the same optimizer (Adam, learning rate 1e-3, cosine decay) and step count.

# %%
model = models.create(BACKBONE, num_classes=num_classes)
fresh = jax.jit(model.init)(jax.random.key(1), jnp.zeros((1, *x_train.shape[1:])))
init = {"params": {**backbone["params"], HEAD: fresh["params"][HEAD]},
        **{k: v for k, v in backbone.items() if k != "params"}}

start = time.perf_counter()
tuned, tune_curve = fit(model, x_train, y_train, test, steps=STEPS["tune"],
                        learning_rate=1e-3, init=init)
print(f"fine-tuned in {time.perf_counter() - start:.0f} s")
start = time.perf_counter()
scratch, scratch_curve = fit(model, x_train, y_train, test, steps=STEPS["tune"],
                             learning_rate=1e-3)
print(f"from scratch in {time.perf_counter() - start:.0f} s")

# %% [markdown]
# ## 4. The comparison
#
# Test accuracy on the new task with the same 1,000 labels. The table's numbers are
# recomputed here from the final variables (the last point of each curve must agree).

# %%
finals = {
    "linear probe (frozen features)": probe_curve[-1]["accuracy"],
    "fine-tuned from pretrained": accuracy(model, tuned, *test),
    "from scratch": accuracy(model, scratch, *test),
}
assert abs(finals["fine-tuned from pretrained"] - tune_curve[-1]["accuracy"]) < 1e-6
assert abs(finals["from scratch"] - scratch_curve[-1]["accuracy"]) < 1e-6
print(f"{TARGET}, {NUM_LABELLED} labels, {len(y_test)} test images "
      f"(chance {1 / num_classes:.2f}):")
for name, acc in finals.items():
    print(f"  {name:32s} {acc:.4f}")

# %%
viz.plot_training_curves(
    {"linear probe": probe_curve, "fine-tuned": tune_curve, "from scratch": scratch_curve},
    metrics=["accuracy"], title=f"{TARGET} test accuracy, {NUM_LABELLED} labels")

# %% [markdown]
# ## 5. What the features look like
#
# The pooled features of the test images, projected on their first two principal components
# (PCA by a NumPy SVD of the centred features), one colour per class. With the pretrained
# features some classes already form their own clusters: the reason a linear probe works at
# all. After fine-tuning, the features are reshaped for the new classes.


# %%
def pca_2d(features):
    """(N, D) -> (N, 2): the centred features on their two leading principal axes."""
    centred = features - features.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    explained = s[:2] ** 2 / np.sum(s ** 2)
    return centred @ vt[:2].T, explained


tuned_backbone = {"params": {k: v for k, v in tuned["params"].items() if k != HEAD},
                  **{k: v for k, v in tuned.items() if k != "params"}}
panels = {"pretrained features": f_test,
          "after fine-tuning": batched_apply(feature_model, tuned_backbone, x_test)}
fig = Figure(figsize=(11, 5))
cmap = matplotlib.colormaps["tab10"]
for ax, (title, feats) in zip(fig.subplots(1, 2), panels.items(), strict=True):
    points, explained = pca_2d(feats)
    for c in range(num_classes):
        sel = y_test == c
        ax.scatter(points[sel, 0], points[sel, 1], s=4, color=cmap(c % 10), label=class_names[c])
    ax.set_title(f"{title} (PC1+PC2: {explained.sum():.0%} of the variance)")
    ax.set_xlabel("PC1")
    ax.set_ylabel("PC2")
fig.axes[1].legend(markerscale=3, fontsize=8, loc="center left", bbox_to_anchor=(1, 0.5))
fig.tight_layout()
fig

# %% [markdown]
# ## Takeaways
#
# * The feature layers of a trained network carry over to a new task: with the head sliced
#   off, a linear classifier on frozen features beats chance by far with 1,000 labels, and
#   costs one forward pass over the data plus a logistic regression.
# * Whether fine-tuning beats the probe and training from scratch depends on how close the
#   tasks are and how long each is trained: digit strokes are a narrow source of features for
#   clothes, and in the fast configuration (a few dozen steps, the committed outputs) the runs
#   are far from converged. Read the table above rather than a rule.
# * The same story at scale: set `CNNJAX_WEIGHTS=/path/to/resnet18-f37072fd.pth` (torchvision's
#   ImageNet weights, see the README) to rerun this notebook with ResNet-18 on CIFAR-10
#   photographs. In the trainer's run configs, `optimizer.freeze` (glob patterns of parameter
#   paths, e.g. `("conv*", "dense1/*")`) trains the head alone on top of frozen features.
