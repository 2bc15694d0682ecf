"""What the round loop tells its observers. Plots, loggers and reports observe the loop; it calls them at two
points and knows nothing of what they draw or where they log."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alpaca_lightning.selftrain.pseudo_labels import PseudoLabelSet
from alpaca_lightning.selftrain.records import RoundRecord

# figure file of a round folder -> its caption (drawn by run_report.RoundPlots; shown by the report and W&B)
ROUND_FIGURES = {
    "confusion.png": "pseudo-labels vs gold",
    "reliability.png": "teacher calibration",
    "class_counts.png": "pseudo-labels per class",
}


@dataclass
class PseudoLabelRound:
    """What a round's pseudo-labelling produced: the selection, the fused teacher on validation, diagnostics."""

    selected: PseudoLabelSet
    teacher_val: np.ndarray
    class_prior: np.ndarray
    diagnostics: dict[str, Any]


@dataclass(frozen=True)
class RoundOutputs:
    """A finished round as its observers see it: the record, and (rounds >= 1) its pseudo-labelling."""

    record: RoundRecord
    labelling: PseudoLabelRound | None
    label_names: list[str]
    val_gold: np.ndarray


class RoundObserver:
    def write_round(self, folder: Path, outputs: RoundOutputs) -> None:
        """Add files to a round's folder while it is still being written (they become part of the unit)."""

    def round_done(self, folder: Path, record: RoundRecord) -> None:
        """A round was computed and its folder is complete (not called for a round reused on resume)."""
