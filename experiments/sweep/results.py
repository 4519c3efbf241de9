"""Result tables of many runs: one row per run, and mean / std / 95% CI per setting over seeds.

Reusable from Python and used by `python -m experiments.sweep` (also `--report DIR...`):

    from experiments.sweep import results
    runs = [results.read_run(d) for d in sorted(Path("runs/sweep").iterdir()) if d.is_dir()]
    fields = results.setting_fields(runs)          # config fields that differ, seed excepted
    rows = results.results_table(runs, fields)     # -> results.csv
    summary = results.summarise(rows, fields)      # -> summary.csv / summary.md

A run is any cnnjax workdir (made by the sweep or by a direct `experiments.classify`/`segment`
command): its settings come from `config.json`, its final validation/test metrics from
`summary.json` (written when a run completes), best validation and curves from
`metrics.jsonl`, and its wall time from the sweep's `sweep_run.json` when the sweep ran it.
The confidence interval is Student's t: mean ± t(0.975, n-1) · std / sqrt(n), with std the
sample standard deviation (ddof=1); it needs n >= 2 (NaN otherwise).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from cnnjax.train.runner.reporting import flatten, read_metrics
from experiments.sweep import plots as sweep_plots

__all__ = [
    "RUN_RECORD",
    "RunResult",
    "mean_ci",
    "read_run",
    "results_table",
    "setting_fields",
    "summarise",
    "t_quantile",
    "write_results",
]

RUN_RECORD = "sweep_run.json"  # the sweep's record of its attempts at a run (commands, exit codes)
METRIC_PREFIXES = ("val_", "best_val_", "test_")
CONFIDENCE = 0.95


@dataclasses.dataclass
class RunResult:
    """What one workdir holds. `metrics`: val_<m> / test_<m> (final), best_val_<m> (the
    validation row with the best `best_metric`); `config`: config.json flattened with dots."""

    name: str
    workdir: Path
    config: dict[str, Any]
    status: str  # completed | failed | unfinished | not started | pruned (by a search)
    step: int | None
    total_steps: int | None
    best_step: int | None
    wall_s: float | None
    metrics: dict[str, float]
    records: list[dict[str, Any]]
    error: str = ""


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # missing, unreadable, not UTF-8, not JSON
        return None


def _best_metric(summary: Mapping[str, Any] | None, config: Mapping[str, Any],
                 records: Sequence[Mapping[str, Any]]) -> tuple[str | None, str]:
    """The trainer's rule: config.best_metric, else mean_iou (segmentation) or accuracy."""
    metric = (summary or {}).get("best_metric") or config.get("best_metric")
    if not isinstance(metric, str):
        val = [r for r in records if r.get("split") == "val"]
        metric = "mean_iou" if val and "mean_iou" in val[0] else "accuracy"
    mode = config.get("best_mode")
    mode = mode if mode in ("min", "max") else ("min" if "loss" in metric else "max")
    return metric, mode


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numeric(row: Mapping[str, Any]) -> dict[str, float]:
    skip = {"step", "epoch", "split"}
    return {k: float(v) for k, v in row.items() if k not in skip and _is_number(v)}


def read_run(workdir: str | Path, config: Mapping[str, Any] | None = None) -> RunResult:
    """One workdir -> a RunResult.

    `config` (a config as a nested dict) stands in for a missing `config.json`: a run that
    failed before the trainer wrote it. Without either, raises FileNotFoundError.
    """
    workdir = Path(workdir)
    config_json = read_json(workdir / "config.json")
    if not isinstance(config_json, dict):
        config_json = config
    if not isinstance(config_json, Mapping):
        raise FileNotFoundError(f"{workdir / 'config.json'} is missing or unreadable: "
                                "not a cnnjax workdir (or a run that never started)")
    flat = flatten(config_json)
    metrics_path = workdir / "metrics.jsonl"
    records = read_metrics(metrics_path)  # damaged lines skipped: a report never crashes
    summary = read_json(workdir / "summary.json")
    completed = isinstance(summary, dict) and summary.get("status") == "completed"
    metrics: dict[str, float] = {}
    for split in ("val", "test"):
        rows = [r for r in records if r.get("split") == split]
        final = summary.get(split) if completed else (_numeric(rows[-1]) if rows else None)
        final = _numeric(final) if isinstance(final, Mapping) else {}  # null/text: skipped
        metrics.update({f"{split}_{k}": v for k, v in final.items()})
    metric, mode = _best_metric(summary if completed else None, flat, records)
    scored = [r for r in records if r.get("split") == "val" and _is_number(r.get(metric))]
    best_step = summary.get("best_step") if completed else None
    at_best = [r for r in scored if r["step"] == best_step]
    if scored:
        # The checkpoint manager's best step when known; else the first best row.
        sign = -1.0 if mode == "min" else 1.0
        best = at_best[-1] if at_best else max(scored, key=lambda r: sign * float(r[metric]))
        metrics.update({f"best_val_{k}": v for k, v in _numeric(best).items()})
    record = read_json(workdir / RUN_RECORD)
    attempts = record.get("attempts") if isinstance(record, dict) else None
    attempts = [a for a in attempts if isinstance(a, dict)] if isinstance(attempts, list) else []
    wall = sum(float(a["wall_s"]) for a in attempts
               if isinstance(a, Mapping) and _is_number(a.get("wall_s"))) if attempts else None
    last = attempts[-1] if attempts else {}
    failed = (last.get("outcome") == "failed" if "outcome" in last
              else last.get("returncode") not in (0, None))
    pruned = isinstance(record, dict) and isinstance(record.get("pruned"), dict)
    status = ("pruned" if pruned else "completed" if completed else "failed" if failed
              else "unfinished" if records else "not started")
    steps = [int(r["step"]) for r in records if _is_number(r.get("step"))]
    return RunResult(
        name=workdir.name, workdir=workdir, config=flat, status=status,
        step=(int(summary["step"]) if _is_number(summary.get("step")) else None) if completed
        else (max(steps) if steps else None),
        total_steps=(summary or {}).get("total_steps") if completed else flat.get(
            "num_train_steps"),
        best_step=best_step,
        wall_s=wall, metrics=metrics, records=records,
        error=attempts[-1].get("error", "") if failed else "",
    )


def _key(value: Any) -> str:
    """A hashable, printable form of a config value (lists/dicts as JSON)."""
    return value if isinstance(value, str) else json.dumps(value)


def _order(key: Sequence[str]) -> tuple[tuple[int, float, str], ...]:
    """Sort key of settings: numbers by value, before other values by their text."""
    out = []
    for k in key:
        try:
            out.append((0, float(k), ""))
        except ValueError:
            out.append((1, 0.0, k))
    return tuple(out)


def setting_fields(runs: Sequence[RunResult]) -> list[str]:
    """The config fields whose values differ between `runs` (sorted), `seed` excepted."""
    keys = sorted(set().union(*(r.config for r in runs))) if runs else []
    return [k for k in keys if k != "seed"
            and len({_key(r.config.get(k)) for r in runs}) > 1]


def metric_columns(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The metric columns present in `rows`, grouped val_, best_val_, test_ (sorted within)."""
    names = set().union(*(row.keys() for row in rows))
    return [n for p in METRIC_PREFIXES for n in sorted(names) if n.startswith(p)]


def results_table(runs: Sequence[RunResult], fields: Sequence[str]) -> list[dict[str, Any]]:
    """One row per run: run, settings, seed, status, steps, wall time, metrics, workdir."""
    rows = []
    for r in runs:
        row: dict[str, Any] = {"run": r.name}
        row.update({f: r.config.get(f) for f in fields})
        row.update(seed=r.config.get("seed"), status=r.status, step=r.step,
                   total_steps=r.total_steps, best_step=r.best_step, wall_s=r.wall_s)
        row.update(r.metrics)
        row.update(workdir=str(r.workdir), error=r.error)
        rows.append(row)
    return rows


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t distribution with `df` degrees of freedom."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p={p!r}; expected 0 < p < 1")
    if not df > 0:
        raise ValueError(f"df={df!r}; expected df > 0")
    return float(stats.t.ppf(p, df))


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, float]:
    """n, mean, std (ddof=1) and the Student-t confidence interval (lo, hi) of `values`.

    NaN values are dropped first; std and the interval are NaN when fewer than 2 remain.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence!r}; expected 0 < confidence < 1")
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    n = int(x.size)
    mean = float(x.mean()) if n else math.nan
    if n < 2:
        return {"n": n, "mean": mean, "std": math.nan, "ci_lo": math.nan, "ci_hi": math.nan}
    std = float(x.std(ddof=1))
    half = t_quantile(0.5 + confidence / 2, n - 1) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "ci_lo": mean - half, "ci_hi": mean + half}


def summarise(rows: Sequence[Mapping[str, Any]], fields: Sequence[str],
              confidence: float = CONFIDENCE) -> list[dict[str, Any]]:
    """One row per setting (distinct values of `fields`), over its completed runs:
    n, runs (all, any status) and <metric>_mean/_std/_ci_lo/_ci_hi for each metric column."""
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(_key(row.get(f)) for f in fields), []).append(row)
    metrics = metric_columns(rows)
    out = []
    for _, members in sorted(groups.items(), key=lambda item: _order(item[0])):
        done = [m for m in members if m.get("status") == "completed"]
        entry: dict[str, Any] = {f: members[0].get(f) for f in fields}
        entry.update(n=len(done), runs=len(members))
        for metric in metrics:
            stat = mean_ci([float(m[metric]) for m in done if m.get(metric) is not None],
                           confidence)
            entry.update({f"{metric}_{k}": stat[k] for k in ("mean", "std", "ci_lo", "ci_hi")})
        out.append(entry)
    return out


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # full precision: the CSV round-trips exactly
    if isinstance(value, list | tuple | dict):
        return json.dumps(value)
    return value


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row.get(c)) for c in columns])
    return path


def _fmt(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.4g}"


def summary_markdown(summary: Sequence[Mapping[str, Any]], fields: Sequence[str],
                     metrics: Sequence[str], confidence: float = CONFIDENCE) -> str:
    """A Markdown table: settings, n, and `mean ± std [95% CI]` per metric."""
    pct = f"{confidence * 100:g}%"
    lines = [f"Mean ± std over seeds [{pct} CI, Student's t] of completed runs.", "",
             "| " + " | ".join([*fields, "n", *metrics]) + " |",
             "|" + "---|" * (len(fields) + 1 + len(metrics))]
    for s in summary:
        cells = [str(_cell(s.get(f))) for f in fields] + [str(s["n"])]
        for m in metrics:
            cells.append(f"{_fmt(s[m + '_mean'])} ± {_fmt(s[m + '_std'])} "
                         f"[{_fmt(s[m + '_ci_lo'])}, {_fmt(s[m + '_ci_hi'])}]")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_results(directory: str | Path, runs: Sequence[RunResult],
                  fields: Sequence[str] | None = None, *, plots: bool = True) -> list[Path]:
    """Write results.csv, summary.csv, summary.md (and plots/) under `directory`.

    `fields`: the setting columns (default: the config fields that differ between runs).
    Returns the paths written.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fields = setting_fields(runs) if fields is None else list(fields)
    rows = sorted(results_table(runs, fields), key=lambda r: (
        _order([_key(r.get(f)) for f in fields]), _order([_key(r.get("seed"))])))
    metrics = metric_columns(rows)
    base = ["run", *fields, "seed", "status", "step", "total_steps", "best_step", "wall_s"]
    written = [write_csv(directory / "results.csv", rows,
                         [*base, *metrics, "workdir", "error"])]
    summary = summarise(rows, fields)
    stat_cols = [f"{m}_{k}" for m in metrics for k in ("mean", "std", "ci_lo", "ci_hi")]
    written.append(write_csv(directory / "summary.csv", summary,
                             [*fields, "n", "runs", *stat_cols]))
    shown = [m for m in metrics if not m.startswith("val_")] or metrics
    path = directory / "summary.md"
    path.write_text(summary_markdown(summary, fields, shown))
    written.append(path)
    if plots:
        written += sweep_plots.write_plots(directory / "plots", runs, summary, fields, metrics)
    return written


def report(directory: Path, workdirs: Sequence[Path], fields: Sequence[str] = (), *,
           planned: Sequence[Any] = (), plots: bool = True, out: Any = None
           ) -> list[RunResult]:
    """Read `workdirs`, write the tables (and plots) into `directory`; returns the runs.

    `planned` runs (`experiments.sweep.local.Run`) that the sweep attempted but that failed
    before writing their config.json are reported too (failed, with their error), from the
    config the sweep planned.
    """
    runs = []
    for w in workdirs:
        try:
            runs.append(read_run(w))
        except (FileNotFoundError, ValueError) as e:  # a damaged config.json: say, go on
            print(f"experiments.sweep: skipped {w}: {e}", file=sys.stderr)
    runs += [read_run(r.workdir, r.config.to_dict()) for r in planned
             if r.workdir not in workdirs and (r.workdir / RUN_RECORD).exists()]
    fields = [*fields, *(f for f in setting_fields(runs) if f not in fields)]
    for path in write_results(directory, runs, fields, plots=plots):
        if path.suffix != ".png":
            print(f"wrote {path}", file=out)
    print((directory / "summary.md").read_text(), file=out)
    return runs
