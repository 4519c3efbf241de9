"""Which checkpoints are kept: the latest `keep` steps plus the `keep_best` steps with the
best metric, as Orbax preservation policies, and the ranking of steps by that metric."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocm


def manager_options(*, keep: int, keep_best: int, best_metric: str | None,
                    best_mode: Literal["max", "min"], async_save: bool, read_only: bool
                    ) -> ocp.CheckpointManagerOptions:
    """Orbax options keeping the `keep` latest steps and the `keep_best` best by
    `best_metric` (`best_mode` "max" or "min"); ValueError naming a bad argument."""
    if not isinstance(keep, int) or keep < 1:
        raise ValueError(f"keep must be an int >= 1 (the latest steps kept), got {keep!r}")
    if not isinstance(keep_best, int) or keep_best < 0:
        raise ValueError(f"keep_best must be an int >= 0, got {keep_best!r}")
    if keep_best and not best_metric:
        raise ValueError(f"keep_best={keep_best} needs best_metric (a metric name), got "
                         f"{best_metric!r}")
    if best_mode not in ("max", "min"):
        raise ValueError(f"best_mode must be 'max' or 'min', got {best_mode!r}")
    policies: list[Any] = [ocm.LatestN(n=keep)]
    best_fn = None
    if best_metric:
        best_fn = _metric_getter(best_metric)
        if keep_best:
            policies.append(
                ocm.BestN(
                    get_metric_fn=best_fn,
                    reverse=best_mode == "min",
                    n=keep_best,
                    keep_checkpoints_without_metrics=False,
                )
            )
    return ocp.CheckpointManagerOptions(
        preservation_policy=ocm.AnyPreservationPolicy(policies),
        best_fn=best_fn,
        best_mode=best_mode,
        enable_async_checkpointing=async_save,
        read_only=read_only,
        create=not read_only,
        cleanup_tmp_directories=not read_only,
    )


def rank_by_metric(metrics_of_step: Mapping[int, Mapping[str, Any] | None], best_metric: str,
                   best_mode: Literal["max", "min"]) -> list[int]:
    """Steps saved with `best_metric`, best first (ties: the later step first)."""
    get = _metric_getter(best_metric)
    scored = []
    for step, metrics in metrics_of_step.items():
        if metrics is None:
            continue
        try:
            scored.append((float(get(metrics)), step))
        except KeyError:
            continue
    sign = -1.0 if best_mode == "max" else 1.0
    return [s for _, s in sorted(scored, key=lambda vs: (sign * vs[0], -vs[1]))]


def _metric_getter(name: str) -> Callable[[Mapping[str, Any]], float]:
    def get(metrics: Mapping[str, Any]) -> float:
        return float(metrics[name])

    return get
