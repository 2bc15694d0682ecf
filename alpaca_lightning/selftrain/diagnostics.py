"""Numbers about pseudo-label quality and teacher calibration, for people reading a run (never used for training).

Self-training only helps when the teacher's confidence means something: the filters keep the confident predictions,
so an over-confident teacher feeds wrong labels to the student. These functions measure that:

* calibration of the teacher on the validation set (expected calibration error and a reliability diagram),
* how the selected pseudo-labels compare with the pool's hidden gold labels (confusion matrix, per-class precision).

Gold labels use -1 for "unknown"; such rows are left out everywhere. Inputs and outputs are numpy.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional.classification import multiclass_confusion_matrix


def _known(probs: np.ndarray, gold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows whose gold label is known (gold >= 0)."""
    gold = np.asarray(gold)
    known = gold >= 0
    return np.asarray(probs, dtype=np.float64)[known], gold[known]


def _confidence_and_correct(probs: np.ndarray, gold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-1 confidence and whether the top-1 class is right, for rows with known gold."""
    probs, gold = _known(probs, gold)
    if len(gold) == 0:
        return np.zeros(0), np.zeros(0)
    return probs.max(axis=1), (probs.argmax(axis=1) == gold).astype(np.float64)


def reliability_bins(probs: np.ndarray, gold: np.ndarray, bins: int = 10) -> list[dict[str, float | int]]:
    """Equal-width confidence bins with their mean confidence and accuracy: the data of a reliability diagram.

    Bin ``i`` holds top-1 confidences in ``[lower, upper)``; a confidence of exactly 1.0 (a saturated softmax) joins
    the last bin. An empty bin has ``count`` 0 and nan confidence/accuracy (there is nothing to average).
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}.")
    confidence, correct = _confidence_and_correct(probs, gold)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, bins - 1)
    out: list[dict[str, float | int]] = []
    for i in range(bins):
        members = index == i
        count = int(members.sum())
        out.append(
            {
                "lower": float(edges[i]),
                "upper": float(edges[i + 1]),
                "confidence": float(confidence[members].mean()) if count else float("nan"),
                "accuracy": float(correct[members].mean()) if count else float("nan"),
                "count": count,
            }
        )
    return out


def expected_calibration_error(probs: np.ndarray, gold: np.ndarray, bins: int = 10) -> float:
    """ECE: the gap between confidence and accuracy, averaged over confidence bins weighted by their size.

    0 means "when the teacher says 80 %, it is right 80 % of the time". Computed from ``reliability_bins`` so the
    number always matches the diagram drawn next to it. (torchmetrics' ``multiclass_calibration_error`` gives the
    same value, except that it puts confidences of exactly 1.0 in a bin of their own.) nan when no gold is known.
    """
    table = reliability_bins(probs, gold, bins)
    total = sum(b["count"] for b in table)
    if total == 0:
        return float("nan")
    return float(sum(b["count"] / total * abs(b["accuracy"] - b["confidence"]) for b in table if b["count"]))


def confusion_matrix(labels: np.ndarray, gold: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts of (gold, label) pairs: rows are the gold class, columns the predicted or pseudo-label class.

    Only rows with known gold (>= 0) count. Returns an int64 array of shape (num_classes, num_classes).
    """
    labels, gold = np.asarray(labels, dtype=np.int64), np.asarray(gold, dtype=np.int64)
    known = gold >= 0
    if not known.any():  # torchmetrics needs at least one example
        return np.zeros((num_classes, num_classes), dtype=np.int64)
    matrix = multiclass_confusion_matrix(
        torch.from_numpy(labels[known]), torch.from_numpy(gold[known]), num_classes=num_classes
    )
    return matrix.numpy().astype(np.int64)


def per_class_precision(labels: np.ndarray, gold: np.ndarray, label_names: list[str]) -> dict[str, float]:
    """For each class c: of the pseudo-labels c with known gold, the fraction whose gold is c.

    Overall pseudo-label accuracy can hide one class being mostly wrong (the student then learns that mistake);
    per-class precision shows it. nan for a class with no pseudo-label of known gold.
    Keys: ``pseudo/precision_<name>``.
    """
    matrix = confusion_matrix(labels, gold, len(label_names))
    labelled = matrix.sum(axis=0)  # column sums: how many examples (of known gold) got each label
    return {
        f"pseudo/precision_{name}": float(matrix[c, c] / labelled[c]) if labelled[c] else float("nan")
        for c, name in enumerate(label_names)
    }


def round_diagnostics(
    pseudo_labels: np.ndarray,
    pseudo_gold: np.ndarray,
    teacher_val_probs: np.ndarray | None,
    val_gold: np.ndarray | None,
    label_names: list[str],
) -> dict[str, float | int]:
    """Flat per-round metrics for the round record: per-class pseudo-label precision, and the teacher's
    validation calibration (``teacher/val_ece``) when validation data is given.

    Counts per class, the overall pseudo-label accuracy and the teacher's accuracies are computed elsewhere
    (``PseudoLabelSet.diagnostics``, ``classification_metrics``).
    """
    out: dict[str, float | int] = dict(per_class_precision(pseudo_labels, pseudo_gold, label_names))
    if teacher_val_probs is not None and val_gold is not None:
        out["teacher/val_ece"] = expected_calibration_error(teacher_val_probs, val_gold)
    return out
