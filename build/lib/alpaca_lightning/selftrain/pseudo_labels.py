"""A round's pseudo-label set: which pool examples were selected, with what label, and how good they were."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from alpaca_lightning.artifacts import atomic_write_csv
from alpaca_lightning.selftrain.filters import PseudoLabelFilter, apply_filters
from alpaca_lightning.selftrain.prediction import Predictions


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
        frame = pd.DataFrame(
            {
                "index": self.positions,
                "label": self.labels,
                "label_name": [label_names[i] for i in self.labels],
                "confidence": self.confidence,
                "gold": self.gold,
            }
        )
        for cls, name in enumerate(label_names):
            frame[f"prob_{name}"] = self.probs[:, cls] if len(self) else []
        return frame

    def save(self, path: Path, label_names: list[str]) -> None:
        atomic_write_csv(path, self.to_frame(label_names))


def select_pseudo_labels(
    teacher: Predictions, filters: list[PseudoLabelFilter], round_index: int, pool_gold: np.ndarray
) -> PseudoLabelSet:
    keep = apply_filters(filters, teacher.probs, round_index)
    positions = np.flatnonzero(keep)
    return PseudoLabelSet(positions, teacher.labels[positions], teacher.probs[positions], pool_gold[positions])
