"""Model registry: `register` a factory under a name, `create(name, num_classes=..., **options)`.

A factory is a Linen module class, a `functools.partial` of one (a named variant such as
`resnet18 = partial(ResNet, stage_sizes=(2, 2, 2, 2))`) or any callable returning a module.
For module classes and partials of them, `create` checks option names against the module's
fields, so a misspelled option fails with the list of valid ones; the model then checks the
option values when it is created.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn

from cnnjax.checks import check_int
from cnnjax.registry import Registry

ModelFactory = Callable[..., nn.Module]

MODELS: Registry[ModelFactory] = Registry("model")

_HIDDEN_FIELDS = frozenset({"parent", "name"})


def register(
    name: str | ModelFactory | None = None, *, overwrite: bool = False
) -> Callable[[ModelFactory], ModelFactory] | ModelFactory:
    """Registers a model factory. Use as `@register`, `@register("name")`, or
    `register("name")(functools.partial(Model, **defaults))`. Returns the factory unchanged.

    A name already taken raises ValueError unless `overwrite=True`.
    """
    if name is not None and not isinstance(name, str):
        return register(None, overwrite=overwrite)(name)

    def decorator(factory: ModelFactory) -> ModelFactory:
        if not callable(factory):
            raise TypeError(f"register({name!r}): factory must be callable; got {factory!r}")
        return MODELS.register(name, overwrite=overwrite)(factory)

    return decorator


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return MODELS.names()


def get_factory(name: str) -> ModelFactory:
    """The factory registered under `name`; ValueError listing the valid names otherwise."""
    return MODELS.get(name)


def model_options(name: str) -> dict[str, Any]:
    """The options `create(name, ...)` accepts and their defaults (module fields, for module
    classes and partials of them; empty for other callables)."""
    factory = get_factory(name)
    cls, preset = _module_class(factory)
    if cls is None:
        return {}
    options = {}
    for f in dataclasses.fields(cls):
        if f.name in _HIDDEN_FIELDS or not f.init:
            continue
        if f.name in preset:
            options[f.name] = preset[f.name]
        elif f.default is not dataclasses.MISSING:
            options[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            options[f.name] = f.default_factory()
        else:
            options[f.name] = dataclasses.MISSING
    return options


def create(name: str, num_classes: int | None = None, **options: Any) -> nn.Module:
    """Builds the registered model `name`; `num_classes=None` keeps the model's default and
    `num_classes=0` drops the classifier head, so the model returns its pooled features
    (timm's convention; the classifiers of the zoo support it).

    Unknown option names raise TypeError naming the valid options; bad option values raise
    (from the model's own checks) ValueError/TypeError naming option, value and expectation.
    """
    factory = get_factory(name)
    if num_classes is not None:
        options["num_classes"] = check_int(num_classes, "num_classes", minimum=0)
    cls, _ = _module_class(factory)
    if cls is not None:
        valid = set(model_options(name))
        unknown = sorted(set(options) - valid)
        if unknown:
            raise TypeError(
                f"create({name!r}): unknown option(s) {', '.join(unknown)}; valid options: "
                f"{', '.join(sorted(valid))}"
            )
    return factory(**options)


def _module_class(factory: ModelFactory) -> tuple[type | None, dict[str, Any]]:
    """(Module class, preset keyword arguments) behind a class or partial, else (None, {})."""
    preset: dict[str, Any] = {}
    while isinstance(factory, functools.partial):
        preset = {**factory.keywords, **preset}
        factory = factory.func
    if isinstance(factory, type) and issubclass(factory, nn.Module):
        return factory, preset
    return None, {}
