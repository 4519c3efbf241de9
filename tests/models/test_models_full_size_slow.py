"""Full-size models take a jit-compiled SGD step on CPU that lowers the loss on its batch.
Slow (seconds to minutes each on 2 cores): run with `pytest -m slow tests/models`."""

import functools

import jax
import jax.numpy as jnp
import optax
import pytest

import cnnjax.models as models

CASES = [
    ("simple_cnn", {}, (8, 28, 28, 1)),
    ("lenet5", {}, (8, 32, 32, 1)),
    ("cnn1d", {}, (8, 128, 1)),
    ("cnn3d", {}, (4, 8, 8, 8, 1)),
    ("resnet18", dict(stem="cifar", num_classes=10), (4, 32, 32, 3)),
    ("resnet50", {}, (2, 64, 64, 3)),
    ("unet", {}, (2, 32, 32, 1)),
    ("unet_original", {}, (1, 188, 188, 1)),
    ("vgg11_bn", dict(num_classes=10), (2, 32, 32, 3)),
    ("alexnet", dict(num_classes=10), (2, 63, 63, 3)),
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "options", "shape"), CASES)
def test_full_size_training_step_lowers_the_loss(name, options, shape):
    model = models.create(name, **options)
    x = jax.random.normal(jax.random.key(0), shape)
    variables = jax.jit(model.init)(jax.random.key(1), x)
    logits = jax.eval_shape(model.apply, variables, x)
    labels = jax.random.randint(jax.random.key(2), logits.shape[:-1], 0, logits.shape[-1])

    def loss_fn(params, state):
        out, updates = model.apply(
            {"params": params, **state},
            x,
            train=True,
            mutable=["batch_stats"],
            rngs={"dropout": jax.random.key(3)},
        )
        loss = optax.softmax_cross_entropy_with_integer_labels(out, labels).mean()
        return loss, updates

    @functools.partial(jax.jit, static_argnames="lr")
    def step(params, state, lr):
        (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, state)
        return jax.tree.map(lambda p, g: p - lr * g, params, grads), updates, loss

    params = variables["params"]
    state = {k: v for k, v in variables.items() if k != "params"}
    new_params, _, loss0 = step(params, state, 1e-3)
    _, _, loss1 = step(new_params, state, 1e-3)
    assert jnp.isfinite(loss0) and loss1 < loss0
