"""report.md: a run's round table and figures in one file a person can open (on GitHub, in an editor, in W&B).

Layout on disk (paths relative to the run folder, so the report's links work wherever the folder is copied):

    report.md
    rounds.png                         accuracies and pseudo-label counts over rounds
    rounds/round_<k>/confusion.png     pseudo-labels vs hidden gold (k >= 1)
    rounds/round_<k>/reliability.png   the teacher's calibration on validation
    rounds/round_<k>/class_counts.png  selected pseudo-labels per class
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from alpaca_lightning.artifacts import atomic_write_text
from alpaca_lightning.selftrain.events import ROUND_FIGURES, RoundObserver, RoundOutputs
from alpaca_lightning.selftrain.diagnostics import confusion_matrix, expected_calibration_error, reliability_bins
from alpaca_lightning.selftrain.plots import plot_class_counts, plot_confusion, plot_reliability, plot_rounds

# record key -> column header of the round table
TABLE_COLUMNS = {
    "round": "round",
    "train_size": "train size",
    "pseudo/count": "pseudo-labels",
    "pseudo/acc": "pseudo-label acc %",
    "pseudo/expected_precision": "expected pseudo-label acc % (calibrated confidence)",
    "teacher/val_ece_uncalibrated": "teacher val ECE before calibration %",
    "teacher/val_ece": "teacher val ECE %",
    "val/acc": "val acc %",
    "test/acc": "test acc %",
    "test/f1_macro": "test F1 macro %",
    "val/f1": "val entity F1 %",  # token tasks
    "test/f1": "test entity F1 %",
}
PERCENT_KEYS = {"pseudo/acc", "pseudo/expected_precision", "teacher/val_ece", "teacher/val_ece_uncalibrated", "val/acc",
                "test/acc", "test/f1_macro", "val/f1", "test/f1"}


def _round_dir(run_dir: Path, k: int) -> Path:
    return Path(run_dir) / "rounds" / f"round_{k}"  # the same layout as SelfTrainingLoop.round_dir


def write_round_plots(
    round_dir: Path,
    label_names: list[str],
    pseudo_labels: np.ndarray,
    pseudo_gold: np.ndarray | None,
    teacher_val_probs: np.ndarray | None,
    val_gold: np.ndarray | None,
    prior: dict[str, float] | None,
    round_index: int,
) -> list[Path]:
    """Write a round's figures into ``round_dir``; return the paths written.

    The confusion matrix needs hidden gold for the pool (skipped when none is known); the reliability diagram needs
    the teacher's validation probabilities and the validation labels (skipped when not given).
    """
    round_dir = Path(round_dir)
    pseudo_labels = np.asarray(pseudo_labels, dtype=np.int64)
    written: list[Path] = []
    if pseudo_gold is not None and (np.asarray(pseudo_gold) >= 0).any():
        matrix = confusion_matrix(pseudo_labels, pseudo_gold, len(label_names))
        title = f"round {round_index}: pseudo-labels vs hidden gold"
        written.append(plot_confusion(matrix, label_names, round_dir / "confusion.png", title))
    if teacher_val_probs is not None and val_gold is not None:
        bins = reliability_bins(teacher_val_probs, val_gold)
        ece = expected_calibration_error(teacher_val_probs, val_gold)
        title = f"round {round_index}: teacher on validation"
        written.append(plot_reliability(bins, ece, round_dir / "reliability.png", title))
    counts = np.bincount(pseudo_labels, minlength=len(label_names))
    title = f"round {round_index}: selected pseudo-labels ({len(pseudo_labels)})"
    per_class = {name: int(counts[c]) for c, name in enumerate(label_names)}
    written.append(plot_class_counts(per_class, prior, round_dir / "class_counts.png", title))
    return written


class RoundPlots(RoundObserver):
    """Each pseudo-label round's figures (confusion, reliability, class counts) in its round folder."""

    def write_round(self, folder: Path, outputs: RoundOutputs) -> None:
        labelling = outputs.labelling
        if labelling is None:
            return
        prior = dict(zip(outputs.label_names, labelling.class_prior.tolist()))
        write_round_plots(folder, outputs.label_names, labelling.selected.labels, labelling.selected.gold,
                          labelling.teacher_val, outputs.val_gold, prior, outputs.record.round)


def write_run_plot(run_dir: Path, records: list[dict[str, Any]]) -> Path:
    """Write ``run_dir/rounds.png``: accuracies and pseudo-label counts over rounds."""
    return plot_rounds(records, Path(run_dir) / "rounds.png")


def _cell(key: str, value: Any) -> str:
    """One table cell: '-' when missing, fractions as percentages with 1 decimal."""
    numeric = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not numeric or not math.isfinite(float(value)):  # None, nan (JSON records) or not a number at all
        return "-"
    if key in PERCENT_KEYS or key.startswith("pseudo/precision_"):
        return f"{100 * float(value):.1f}"
    return f"{float(value):.0f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def chosen_by(results: dict[str, Any]) -> str:
    """How the reported round was chosen, in words (``select_round`` of results.json: the schedule's rule)."""
    rule = results.get("select_round")
    if rule == "last":
        return "the last round that ran, schedule=last"
    if rule == "guarded":
        return "the last round that ran and was not worse than its teacher round on validation, schedule=guarded"
    return f"the best {results.get('monitor', 'validation score')}, on validation"


def _title(results: dict[str, Any]) -> list[str]:
    task, seed = results.get("task"), results.get("seed")
    heading = "# Self-training report"
    if task is not None:
        heading += f": {task}"
    if seed is not None:
        heading += f", seed {seed}"
    lines = [heading, ""]
    if results.get("best_round") is not None:
        lines.append(f"- reported round: {results['best_round']} ({chosen_by(results)})")
    if results.get("stop_reason"):
        lines.append(f"- stopped: {results['stop_reason']}")
    lines.append("- round 0 is supervised only (labelled set); rounds >= 1 add the teacher's pseudo-labels")
    return lines + [""]


def _round_table(records: list[dict[str, Any]]) -> list[str]:
    # a column that no round has (e.g. the ECE before calibration, without calibration) is left out
    columns = [key for key in TABLE_COLUMNS if key in ("round", "train_size") or any(key in r for r in records)]
    rows = []
    for record in records:
        row = [_cell(key, record.get(key)) for key in columns]
        if record.get("best"):
            row[0] += " (reported)"
        rows.append(row)
    return _table([TABLE_COLUMNS[key] for key in columns], rows)


def _precision_table(records: list[dict[str, Any]], label_names: list[str]) -> list[str]:
    """Per-class pseudo-label precision (%) per round, when the records carry it (rounds >= 1 with hidden gold)."""
    keys = [f"pseudo/precision_{name}" for name in label_names]
    rows = [[str(r["round"])] + [_cell(k, r.get(k)) for k in keys] for r in records if any(k in r for k in keys)]
    if not rows:
        return []
    lines = [
        "## Pseudo-label precision per class (%)",
        "",
        "Of the pool examples given label c (with known gold), the share whose hidden gold is c.",
        "",
    ]
    return lines + _table(["round", *label_names], rows) + [""]


def _figures(run_dir: Path, records: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    if (run_dir / "rounds.png").is_file():
        lines += ["## Rounds", "", "![accuracies and pseudo-labels per round](rounds.png)", ""]
    for record in records:
        k = int(record["round"])
        if k < 1:
            continue
        present = [name for name in ROUND_FIGURES if (_round_dir(run_dir, k) / name).is_file()]
        if not present:
            continue
        lines += [f"## Round {k}", ""]
        lines += [f"![round {k}: {ROUND_FIGURES[name]}](rounds/round_{k}/{name})" for name in present]
        lines.append("")
    return lines


def write_run_report(
    run_dir: Path, records: list[dict[str, Any]], results: dict[str, Any], label_names: list[str]
) -> Path:
    """Write ``run_dir/report.md`` (atomically): title, round table, per-class precision, figures that exist."""
    run_dir = Path(run_dir)
    lines = _title(results)
    lines += ["## Round table", "", "Accuracy, F1 and ECE in %; '-' where not measured.", ""]
    lines += _round_table(records) + [""]
    lines += _precision_table(records, label_names)
    lines += _figures(run_dir, records)
    if results.get("use_command"):
        lines += ["## Use the model", "", "```bash", results["use_command"], "```", ""]
    path = run_dir / "report.md"
    atomic_write_text(path, "\n".join(lines).rstrip("\n") + "\n")
    return path
