"""The `TRACKERS` registry: what `config.trackers` may name, and its checks.

A tracker is `open(ctx: TrackerContext) -> MetricWriter` registered with the option names it
takes (`config.tracker_options.<name>.<option>`) and the package it needs, if any:

    @register_tracker("my_tracker", options=("url",), package="my_client")
    def open_my_tracker(ctx): return MyWriter(ctx.options.get("url"), ...)

`check_trackers(trackers, tracker_options)` runs when the config is prepared (names registered,
"jsonl" among them, no name twice, option names known); `require_package(name)` when a
training run opens its writers, so that eval, predict and export of a run tracked with MLflow
still work where MLflow is not installed.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cnnjax.registry import NameList, Registry, origin_of
from cnnjax.train.runner.trackers.base import MetricWriter, TrackerContext

__all__ = ["TRACKERS", "TRACKER_NAMES", "TrackerEntry", "check_trackers", "register_tracker",
           "require_package", "tracker_names"]

Opener = Callable[[TrackerContext], MetricWriter]


@dataclasses.dataclass(frozen=True)
class TrackerEntry:
    """A registered tracker: its opener, the options it takes, the package it imports."""

    open: Opener
    options: tuple[str, ...] = ()
    package: str | None = None

    @property
    def registry_origin(self) -> tuple[str, str] | None:
        return origin_of(self.open)


TRACKERS: Registry[TrackerEntry] = Registry("tracker")
TRACKER_NAMES: Sequence[str] = NameList(TRACKERS)
"""The registered tracker names (a live view)."""


def register_tracker(name: str, *, options: Sequence[str] = (), package: str | None = None
                     ) -> Callable[[Opener], Opener]:
    """Decorator registering `open(ctx) -> MetricWriter` as tracker `name`."""

    def add(fn: Opener) -> Opener:
        TRACKERS.register(name)(TrackerEntry(fn, tuple(options), package))
        return fn

    return add


def tracker_names(value: Any) -> tuple[str, ...]:
    """`config.trackers` as a tuple of names (a single string is one name)."""
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list | tuple):
        raise ValueError(f"config.trackers={value!r}; expected a tuple of tracker names from "
                         f"{tuple(TRACKER_NAMES)}, e.g. ('jsonl', 'tensorboard')")
    return tuple(value)


def check_trackers(trackers: Any, tracker_options: Mapping[str, Any] | None) -> None:
    """`ValueError` naming the field, value and choices for a bad `config.trackers` or
    `config.tracker_options`; `ModuleNotFoundError` when a named tracker's package is absent."""
    names = tracker_names(trackers)
    for name in names:
        if not isinstance(name, str) or name not in TRACKERS:
            raise ValueError(f"config.trackers: unknown tracker {name!r}; expected names from "
                             f"{tuple(TRACKER_NAMES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"config.trackers={names!r} names a tracker twice")
    if "jsonl" not in names:
        raise ValueError(f"config.trackers={names!r} must include 'jsonl': metrics.jsonl is "
                         "the run's own record (resume, plots and experiments.sweep.results "
                         "read it)")
    if hasattr(tracker_options, "to_dict"):
        tracker_options = tracker_options.to_dict()
    if not isinstance(tracker_options, Mapping | None):
        raise ValueError(f"config.tracker_options={tracker_options!r}; expected a group of "
                         "groups, e.g. {'mlflow': {'tracking_uri': ...}}")
    for name, options in dict(tracker_options or {}).items():
        if name not in TRACKERS:
            raise ValueError(f"config.tracker_options.{name}: unknown tracker {name!r}; "
                             f"expected names from {tuple(TRACKER_NAMES)}")
        if not isinstance(options, Mapping):
            raise ValueError(f"config.tracker_options.{name}={options!r}; expected a group "
                             f"of options from {TRACKERS.get(name).options}")
        unknown = sorted(set(options) - set(TRACKERS.get(name).options))
        if unknown:
            raise ValueError(f"config.tracker_options.{name}: unknown option(s) {unknown}; "
                             f"{name} takes {list(TRACKERS.get(name).options)}")


def require_package(name: str) -> None:
    """`ValueError` (install hint included) when tracker `name` needs an absent package."""
    package = TRACKERS.get(name).package
    if package and importlib.util.find_spec(package) is None:
        raise ValueError(
            f"config.trackers names {name!r}, but the package {package!r} is not installed; "
            f"pip install 'cnnjax[trackers]' (or pip install {package}), or remove {name!r} "
            "from config.trackers")
