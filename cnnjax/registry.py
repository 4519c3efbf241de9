"""One registry pattern for everything cnnjax looks up by name (models, data sources,
augmentations, optimizers, schedules, tasks): a `Registry` per kind, filled with its
`register` decorator where each entry is defined, read with `get`.

    MODELS = Registry("model")

    @MODELS.register("resnet18")          # or @MODELS.register, which takes __name__
    def resnet18(**kw): ...

    MODELS.get("resnet18")                # ValueError naming the kind, value and choices

Adding an entry is one edit: the decorated definition. Nothing here depends on the rest of
cnnjax, so every layer can use it.

A name registered again by the SAME definition (same source file and qualified name: a module
or a config file executed again, e.g. `config.imports` of an evaluation after the config file
registered it, or `importlib.reload`) replaces the entry silently: registrations survive
reloads. Another definition under a taken name is still an error.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")

__all__ = ["NameList", "Registry", "origin_of"]


def origin_of(entry: Any) -> tuple[str, str] | None:
    """(source file, qualified name) of a function or class, or of what an entry wraps (its
    `registry_origin`); None when unknown (then a second registration is an error)."""
    wrapped = getattr(entry, "registry_origin", None)
    if wrapped is not None and not inspect.isclass(entry):
        return wrapped
    qualname = getattr(entry, "__qualname__", None)
    if qualname is None:
        return None
    code = getattr(entry, "__code__", None)
    if code is not None:
        return code.co_filename, qualname
    try:
        return inspect.getfile(entry), qualname
    except (TypeError, OSError):
        return None


class Registry(Generic[T]):
    """Named entries of one kind ("model", "data set", ...), in registration order."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    @overload
    def register(self, name: T, *, overwrite: bool = False) -> T: ...

    @overload
    def register(
        self, name: str | None = None, *, overwrite: bool = False
    ) -> Callable[[T], T]: ...

    def register(self, name=None, *, overwrite=False):
        """Decorator adding an entry under `name` (default: the entry's `__name__`).

        `@reg.register`, `@reg.register("name")` and `reg.register("name")(value)` all work
        and return the entry unchanged. A name already taken raises ValueError unless
        `overwrite=True`.
        """
        if name is not None and not isinstance(name, str):
            return self.register(None, overwrite=overwrite)(name)

        def add(entry: T) -> T:
            key = name if name is not None else getattr(entry, "__name__", None)
            if not isinstance(key, str) or not key:
                raise ValueError(
                    f"register: a {self.kind} name (non-empty str) is needed; got {key!r}"
                )
            same = key in self._entries and origin_of(entry) is not None and (
                origin_of(self._entries[key]) == origin_of(entry))
            if key in self._entries and not overwrite and not same:
                raise ValueError(
                    f"register: {self.kind} {key!r} is already registered (pass overwrite=True)"
                )
            self._entries[key] = entry
            return entry

        return add

    def unregister(self, name: str) -> None:
        """Remove `name` (absent: nothing happens), e.g. a test's own entry, so that it does
        not outlive the test in the process (a tracker's options shape `default_config`)."""
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        """The entry under `name`; ValueError naming the value and the registered names."""
        if not isinstance(name, str) or name not in self._entries:
            raise ValueError(
                f"unknown {self.kind} {name!r}; expected one of: {', '.join(self.names())}"
            )
        return self._entries[name]

    def names(self, *, in_order: bool = False) -> list[str]:
        """Registered names, sorted (`in_order=True`: in registration order)."""
        return list(self._entries) if in_order else sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)


class NameList(Sequence[str]):
    """The names of `registry` (sorted, or in registration order with `in_order=True`)
    followed by `extra`, read when used: a tuple-like view that also lists entries
    registered after import (e.g. a user's own data set)."""

    def __init__(self, registry: Registry, *extra: str, in_order: bool = False) -> None:
        self._registry = registry
        self._extra = extra
        self._in_order = in_order

    def _names(self) -> tuple[str, ...]:
        return (*self._registry.names(in_order=self._in_order), *self._extra)

    def __getitem__(self, index):  # type: ignore[override]
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __eq__(self, other: object) -> bool:
        return tuple(self) == (tuple(other) if isinstance(other, NameList) else other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self._names())


def parse_call(text: str, what: str) -> tuple[str, dict[str, Any]]:
    """A registered name with options, as written in a config string: "name" or
    "name(key=literal, ...)" -> (name, options). `what` names the kind in errors ("augment
    op", "loss term")."""
    try:
        node = ast.parse(text.strip(), mode="eval").body
        if isinstance(node, ast.Name):
            return node.id, {}
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.args:
            return node.func.id, {k.arg: ast.literal_eval(k.value) for k in node.keywords}
    except (SyntaxError, ValueError) as e:
        raise ValueError(f"{what} {text!r}: cannot parse ({e})") from e
    raise ValueError(f"{what} {text!r}: expected 'name' or 'name(key=value, ...)'")
