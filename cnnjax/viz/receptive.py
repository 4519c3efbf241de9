"""Receptive fields of a stack of conv/pool layers: a table and a diagram.

Built on `cnnjax.ops.receptive_field` (one spatial dim; square layers have the same
numbers along every dim). Padding changes where a receptive field sits, not its size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from cnnjax.ops import LayerSpec, receptive_field
from cnnjax.viz._common import PathLike, finish

Layer = LayerSpec | tuple[int, ...] | int


def _specs(layers: Sequence[Layer]) -> list[LayerSpec]:
    receptive_field(layers)  # validates every layer with a message naming it
    out = []
    for layer in layers:
        if isinstance(layer, LayerSpec):
            out.append(layer)
        elif isinstance(layer, int | np.integer):
            out.append(LayerSpec(int(layer)))
        else:
            out.append(LayerSpec(*(int(v) for v in layer)))
    return out


def _names(names: Sequence[str] | None, n: int) -> list[str]:
    if names is None:
        return [f"layer {i + 1}" for i in range(n)]
    if len(names) != n:
        raise ValueError(f"names must have one entry per layer ({n}), got {len(names)}")
    return [str(s) for s in names]


def receptive_field_table(
    layers: Sequence[Layer], names: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """One row per layer: name, kernel_size, stride, dilation, rf_size and jump.

    layers: as `cnnjax.ops.receptive_field` takes them: `LayerSpec`, ``(kernel_size,
        stride[, dilation])`` tuples or bare kernel sizes, from the input upwards.
    rf_size is the number of input pixels (along one dim) one unit after the layer sees;
    jump the distance in input pixels between neighbouring units (the product of strides).
    """
    fields = receptive_field(layers)
    specs = _specs(layers)
    return [
        {
            "layer": name,
            "kernel_size": spec.kernel_size,
            "stride": spec.stride,
            "dilation": spec.dilation,
            "rf_size": rf.size,
            "jump": rf.jump,
        }
        for name, spec, rf in zip(_names(names, len(specs)), specs, fields, strict=True)
    ]


def format_receptive_field_table(rows: Sequence[dict[str, Any]]) -> str:
    """`receptive_field_table` rows as an aligned plain-text table (for print/logs)."""
    header = ["layer", "kernel_size", "stride", "dilation", "rf_size", "jump"]
    cells = [header] + [[str(r[h]) for h in header] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                       enumerate(zip(row, widths, strict=True))) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def plot_receptive_field(
    layers: Sequence[Layer],
    names: Sequence[str] | None = None,
    *,
    title: str | None = None,
    path: PathLike | None = None,
) -> Figure:
    """Two axes: a 1D diagram of which units feed one unit of the last layer, and a bar
    chart of the receptive-field size after each layer.

    Diagram: the bottom row is the input pixels inside the final receptive field; row l
    holds the units of layer l that feed the single top unit, each drawn as a tick at the
    centre of its own receptive field, with the receptive field of the leftmost unit shaded.
    Units of a layer are `jump` input pixels apart, so strides show as spreading ticks.
    """
    specs = _specs(layers)
    if not specs:
        raise ValueError("layers must contain at least one layer, got an empty sequence")
    rows = receptive_field_table(specs, names)
    labels = _names(names, len(specs))
    total = rows[-1]["rf_size"]
    fig = Figure(figsize=(10, 0.45 * len(specs) + 2.2))
    ax, bar_ax = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 1.2]})
    sizes = [1] + [r["rf_size"] for r in rows]
    jumps = [1] + [r["jump"] for r in rows]
    for level, (size, jump) in enumerate(zip(sizes, jumps, strict=True)):
        count = (total - size) // jump + 1
        color = f"C{level % 10}"
        ax.add_patch(Rectangle((-0.5, level - 0.35), size, 0.7, color=color, alpha=0.25, lw=0))
        if count <= 256:
            centres = (size - 1) / 2 + jump * np.arange(count)
            ax.plot(centres, np.full(count, level), "|", color=color, markersize=10, mew=2)
        else:
            ax.add_patch(Rectangle((-0.5, level - 0.08), total, 0.16, color=color, lw=0))
        ax.text(total + 0.5, level, f"{count} unit{'s' * (count > 1)}, rf {size}, jump {jump}",
                va="center", fontsize=8)
    ax.set_yticks(range(len(sizes)), labels=["input", *labels])
    ax.set_xlim(-1, total * 1.45 + 2)
    ax.set_ylim(-0.7, len(sizes) - 0.3)
    ax.set_xlabel("input pixel (along one spatial dim)")
    ax.set_title(f"units feeding one unit of {labels[-1]}: receptive field {total}", fontsize=10)
    bar_ax.barh(range(1, len(sizes)), sizes[1:], color="C0")
    bar_ax.set_yticks(range(1, len(sizes)), labels=labels)
    bar_ax.set_ylim(0.3, len(sizes) - 0.3)
    bar_ax.set_xlabel("receptive field (pixels)")
    for i, s in enumerate(sizes[1:], 1):
        bar_ax.text(s, i, f" {s}", va="center", fontsize=8)
    bar_ax.set_xlim(0, max(sizes) * 1.25)
    if title:
        fig.suptitle(title)
    return finish(fig, path)
