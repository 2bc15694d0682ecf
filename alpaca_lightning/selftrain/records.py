"""The typed record of one round, and the names of the metrics that the loop, the reports and sweeps share.

On disk (``rounds/round_<k>/metrics.json``, ``rounds.json``, ``rounds.csv``) a record is one flat dict, so tables
and sweeps read it without this class: ``round``, ``teacher_round``, ``train_size``, the student's metrics
(``val/acc``, ``test/acc``, ...), the diagnostics (``pseudo/...``, ``teacher/...``), ``wall_time_s`` and ``best``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

VAL_PREFIX, TEST_PREFIX = "val/", "test/"
EVALUATED_SPLITS = {"validation": VAL_PREFIX, "test": TEST_PREFIX}


@dataclass
class RoundRecord:
    round: int
    teacher_round: int | None
    train_size: int
    metrics: dict[str, float]  # the student's scores: "val/acc", "val/f1_macro", "test/acc", ...
    diagnostics: dict[str, Any] = field(default_factory=dict)  # "pseudo/...", "teacher/...": never used to select
    wall_time_s: float = 0.0
    best: bool = False

    def score(self, monitor: str) -> float:
        return self.metrics[monitor]

    def to_dict(self) -> dict[str, Any]:
        return {
            "round": self.round, "teacher_round": self.teacher_round, "train_size": self.train_size,
            **self.metrics, **self.diagnostics, "wall_time_s": self.wall_time_s, "best": self.best,
        }

    @classmethod
    def from_dict(cls, flat: dict[str, Any]) -> RoundRecord:
        core = ("round", "teacher_round", "train_size", "wall_time_s", "best")
        metrics = {k: v for k, v in flat.items() if k.startswith((VAL_PREFIX, TEST_PREFIX))}
        diagnostics = {k: v for k, v in flat.items() if k not in core and k not in metrics}
        return cls(flat["round"], flat.get("teacher_round"), flat["train_size"], metrics, diagnostics,
                   flat.get("wall_time_s", 0.0), bool(flat.get("best", False)))
