"""A round's pseudo-label set: which pool examples were selected, with what label, and how good they were."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from alpaca_lightning.artifacts import atomic_write_csv
from alpaca_lightning.selftrain.filters import PseudoLabelFilter, SelectionContext, apply_filters
from alpaca_lightning.selftrain.fusion import Fused

LABEL_KINDS = ("hard", "soft")


@dataclass
class LabelUse:
    """How the student learns from pseudo-labels: ``hard`` (the argmax) or ``soft`` (the teacher's distribution,
    sharpened when ``temperature`` < 1 and flattened when > 1, i.e. distillation), optionally weighting each
    example's loss by the teacher's confidence."""

    kind: str = "hard"
    temperature: float = 1.0
    weight_by_confidence: bool = False

    def __post_init__(self) -> None:
        if self.kind not in LABEL_KINDS:
            raise ValueError(f"selftrain.labels must be one of {LABEL_KINDS}, got '{self.kind}'.")
        if self.temperature <= 0:
            raise ValueError(f"selftrain.temperature must be > 0, got {self.temperature}.")


@dataclass
class PseudoLabelSet:
    positions: np.ndarray  # indices into the unlabelled pool
    labels: np.ndarray
    probs: np.ndarray  # (n, classes) teacher probabilities
    gold: np.ndarray  # hidden gold labels, -1 where unknown (diagnostics only)

    @property
    def confidence(self) -> np.ndarray:
        return self.probs.max(axis=1) if len(self.probs) else np.zeros(0)

    def __len__(self) -> int:
        return len(self.positions)

    def diagnostics(self, label_names: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"pseudo/count": len(self)}
        for cls, name in enumerate(label_names):
            out[f"pseudo/count_{name}"] = int((self.labels == cls).sum())
        known = self.gold >= 0
        if known.any():
            out["pseudo/acc"] = float((self.labels[known] == self.gold[known]).mean())
        out["pseudo/mean_confidence"] = float(self.confidence.mean()) if len(self) else float("nan")
        return out

    def to_frame(self, label_names: list[str]) -> pd.DataFrame:
        # One dict, one DataFrame: adding a column per class fragments the frame (slow with 200 classes).
        return pd.DataFrame(
            {
                "index": self.positions,
                "label": self.labels,
                "label_name": [label_names[i] for i in self.labels],
                "confidence": self.confidence,
                "gold": self.gold,
                **{f"prob_{name}": self.probs[:, cls] if len(self) else [] for cls, name in enumerate(label_names)},
            }
        )

    def save(self, path: Path, label_names: list[str]) -> None:
        atomic_write_csv(path, self.to_frame(label_names))

    def training_fields(self, use: LabelUse) -> dict[str, np.ndarray | None]:
        """Keyword arguments for ``SelfTrainingDataModule.start_round``: labels, weights and soft targets."""
        targets = None
        if use.kind == "soft":
            tempered = np.power(np.clip(self.probs, 1e-12, 1.0), 1.0 / use.temperature)
            targets = tempered / tempered.sum(axis=1, keepdims=True)
        weights = self.confidence if use.weight_by_confidence else np.ones(len(self))
        return {"positions": self.positions, "labels": self.labels, "weights": weights, "targets": targets}


def select_pseudo_labels(
    teacher: Fused, filters: list[PseudoLabelFilter], context: SelectionContext, pool_gold: np.ndarray
) -> PseudoLabelSet:
    """Apply the filters to the (fused) teacher, starting from the examples the fusion left eligible."""
    keep = apply_filters(filters, teacher.probs, context, keep=teacher.eligible)
    positions = np.flatnonzero(keep)
    probs = teacher.probs[positions]
    return PseudoLabelSet(positions, probs.argmax(axis=1), probs, pool_gold[positions])
