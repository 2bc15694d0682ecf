"""PNG figures of a self-training run: per round (confusion, reliability, class counts) and across rounds.

Each function draws one figure, writes it atomically (a temporary file in the same folder, then a rename, so a
reader never sees half a PNG) and closes it (figures left open leak memory over many rounds).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on training machines; must come before pyplot is imported

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from alpaca_lightning.artifacts import atomic_write

DPI = 110
MAX_INCHES = 16.0  # a figure's longest side: a per-class figure of 200 classes would otherwise be 15,000 pixels
MAX_ANNOTATED_CLASSES = 30  # beyond this, per-cell numbers are unreadable and drawing them takes minutes
MAX_CLASS_TICKS = 50


def _save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` to ``path`` as PNG, atomically; always close the figure."""
    try:
        atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=DPI, bbox_inches="tight"), binary=True)
    finally:
        plt.close(fig)
    return Path(path)


def _is_number(value: Any) -> bool:
    """A finite int/float (bools and None, as found in JSON records, are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    return math.isfinite(float(value))


def _series(records: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """(rounds, values) of the records that have a number under ``key``."""
    points = [(int(r["round"]), float(r[key])) for r in records if _is_number(r.get(key))]
    return [x for x, _ in points], [y for _, y in points]


def _class_ticks(ax: Any, axis: str, names: list[str]) -> None:
    """At most ``MAX_CLASS_TICKS`` class names along ``axis`` (every k-th name when there are more classes)."""
    step = max(1, math.ceil(len(names) / MAX_CLASS_TICKS))
    positions, shown = range(0, len(names), step), names[::step]
    if axis == "y":
        ax.set_yticks(positions, shown)
    else:
        slanted = len(names) > 4
        ax.set_xticks(positions, shown, rotation=45 if slanted else 0, ha="right" if slanted else "center")


def plot_confusion(matrix: np.ndarray, label_names: list[str], path: Path, title: str) -> Path:
    """Heatmap of counts, rows = hidden gold class, columns = pseudo-label; each cell annotated with its count
    (up to ``MAX_ANNOTATED_CLASSES`` classes)."""
    matrix = np.asarray(matrix)
    n = len(label_names)
    size = min(MAX_INCHES, max(4.0, 0.7 * n + 2.0))
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    image = ax.imshow(matrix, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    threshold = matrix.max() / 2 if matrix.size else 0  # dark cells get white text
    for row in range(matrix.shape[0] if n <= MAX_ANNOTATED_CLASSES else 0):
        for col in range(matrix.shape[1]):
            value = matrix[row, col]
            color = "white" if value > threshold else "black"
            ax.text(col, row, f"{value:d}", ha="center", va="center", color=color, fontsize=9)
    _class_ticks(ax, "x", label_names)
    _class_ticks(ax, "y", label_names)
    ax.set_xlabel("pseudo-label")
    ax.set_ylabel("gold label (hidden)")
    ax.set_title(title)
    return _save(fig, path)


def plot_reliability(bins: list[dict[str, Any]], ece: float, path: Path, title: str) -> Path:
    """Reliability diagram: accuracy per confidence bin as bars, the gap to mean confidence in red, the diagonal."""
    fig, ax = plt.subplots(figsize=(5.0, 5.0))
    filled = [b for b in bins if b["count"] > 0]
    lefts = [b["lower"] for b in filled]
    widths = [b["upper"] - b["lower"] for b in filled]
    accuracies = [b["accuracy"] for b in filled]
    gaps = [b["confidence"] - b["accuracy"] for b in filled]  # > 0: over-confident
    ax.bar(lefts, accuracies, width=widths, align="edge", color="tab:blue", edgecolor="black", label="accuracy")
    ax.bar(
        lefts,
        gaps,
        bottom=accuracies,
        width=widths,
        align="edge",
        color="tab:red",
        alpha=0.35,
        edgecolor="tab:red",
        hatch="//",
        label="gap to mean confidence",
    )
    for b in filled:  # how many examples each bar rests on
        top = max(b["accuracy"], b["confidence"])
        ax.text((b["lower"] + b["upper"]) / 2, min(top + 0.02, 0.97), str(b["count"]), ha="center", fontsize=7)
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top-1 probability)")
    ax.set_ylabel("accuracy")
    ece_text = "n/a" if not _is_number(ece) else f"{100 * ece:.1f}%"
    ax.set_title(f"{title}\nECE {ece_text}")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=7)  # below: bars fill the axes
    return _save(fig, path)


def plot_class_counts(counts: dict[str, int], prior: dict[str, float] | None, path: Path, title: str) -> Path:
    """Bars of selected pseudo-labels per class; with ``prior``, a black line per class marks what the pool-prior
    class distribution would give for the same total (a big gap means the teacher favours some classes).
    """
    names = list(counts)
    values = [int(counts[name]) for name in names]
    fig, ax = plt.subplots(figsize=(min(MAX_INCHES, max(4.0, 0.8 * len(names) + 2.0)), 4.0))
    positions = np.arange(len(names))
    ax.bar(positions, values, color="tab:blue", label="selected pseudo-labels")
    for x, value in zip(positions if len(names) <= MAX_ANNOTATED_CLASSES else [], values):
        ax.text(x, value, str(value), ha="center", va="bottom", fontsize=8)
    expected: list[float] = []
    if prior:
        total = sum(values)
        expected = [prior.get(name, 0.0) * total for name in names]
        ax.hlines(expected, positions - 0.4, positions + 0.4, colors="black", linewidth=2, label="pool class prior")
    ax.set_ylim(0, 1.25 * max([1, *values, *expected]))  # head room for the legend and the bar labels
    _class_ticks(ax, "x", names)
    ax.set_ylabel("examples")
    ax.set_title(title)
    ax.legend(loc="upper center", ncol=2, fontsize=8)
    return _save(fig, path)


def plot_rounds(records: list[dict[str, Any]], path: Path) -> Path:
    """Two panels over rounds (round 0 = supervised only): accuracies in %, and the number of pseudo-labels."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.0, 6.5), sharex=True, height_ratios=[2, 1])
    lines = [
        ("val/acc", "validation accuracy", "o-"),
        ("test/acc", "test accuracy", "s-"),
        ("val/f1", "validation entity F1", "o-."),  # token tasks
        ("test/f1", "test entity F1", "s-."),
        ("pseudo/acc", "pseudo-label accuracy (vs hidden gold)", "^--"),
        ("pseudo/expected_precision", "expected pseudo-label accuracy (calibrated)", "v:"),
    ]
    for key, label, style in lines:
        xs, ys = _series(records, key)
        if xs:
            top.plot(xs, [100 * y for y in ys], style, label=label)
    best = next((r for r in records if r.get("best")), None)
    if best is not None:
        for ax in (top, bottom):
            ax.axvline(best["round"], color="gold", linewidth=6, alpha=0.4, zorder=0)
        xs, ys = _series([best], "val/acc")
        if xs:
            top.plot(xs, [100 * ys[0]], "*", color="darkorange", markersize=16,
                     label=f"reported round ({best['round']})")
    top.set_ylabel("%")
    top.set_title("self-training rounds (round 0 = supervised only)")
    top.grid(alpha=0.3)
    if top.get_legend_handles_labels()[0]:
        top.legend(fontsize=8)

    xs, counts = _series(records, "pseudo/count")
    bottom.bar(xs, counts, color="tab:green", width=0.6)
    for x, count in zip(xs, counts):
        bottom.text(x, count, f"{count:.0f}", ha="center", va="bottom", fontsize=8)
    bottom.set_ylabel("pseudo-labels")
    bottom.set_xlabel("round")
    bottom.grid(alpha=0.3, axis="y")
    rounds = sorted({int(r["round"]) for r in records})
    bottom.set_xticks(rounds)  # integer ticks only: rounds are whole
    return _save(fig, path)
