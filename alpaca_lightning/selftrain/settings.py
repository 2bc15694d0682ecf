"""The numeric settings of the rounds (``conf/selftrain/default.yaml``, the one place with their defaults).

The choices of the round loop are plug-ins, each a config group with one class per option: ``schedule``,
``calibration``, ``teacher_selection``, ``student_init`` (and ``fusion``, ``filters``, ``teachers``)."""

from __future__ import annotations

from dataclasses import dataclass

from alpaca_lightning.data.datamodule import check_labelled_share
from alpaca_lightning.errors import AlpacaError
from alpaca_lightning.selftrain.pseudo_labels import LabelUse
from alpaca_lightning.selftrain.records import VAL_PREFIX

LOWER_IS_BETTER = ("nll", "loss", "ece")


@dataclass(frozen=True)
class RoundSettings:
    """Every field is required here: the YAML holds the defaults."""

    max_rounds: int
    patience: int | None
    supervised_epochs: int
    student_epochs: int
    labelled_share: float | None
    min_precision: float | None
    max_prior_distance: float | None
    supervised_lr: float | None
    student_lr: float | None
    monitor: str
    min_improvement: float
    labels: str
    temperature: float
    weight_by_confidence: bool

    @property
    def label_use(self) -> LabelUse:
        return LabelUse(self.labels, self.temperature, self.weight_by_confidence)

    @property
    def minimize(self) -> bool:
        """Losses and calibration errors are better when lower (val/nll); accuracy and F1 when higher."""
        return self.monitor.endswith(LOWER_IS_BETTER)

    def better(self, score: float, best: float) -> bool:
        """Whether ``score`` beats ``best`` by more than ``min_improvement``."""
        gain = best - score if self.minimize else score - best
        return gain > self.min_improvement

    def __post_init__(self) -> None:
        _ = self.label_use  # validates the label options before any training
        if not self.monitor.startswith(VAL_PREFIX):
            raise AlpacaError(
                f"selftrain.monitor='{self.monitor}' would choose the best round on a non-validation metric; the "
                f"round must be chosen on validation only (e.g. selftrain.monitor=val/acc or val/f1_macro). Test "
                f"scores are reported for every round in rounds.csv."
            )
        for key, lr in {"supervised_lr": self.supervised_lr, "student_lr": self.student_lr}.items():
            if lr is not None and not lr > 0:
                raise AlpacaError(f"selftrain.{key} must be > 0 or null (the model's optimizer lr), got {lr}.")
        check_labelled_share(self.labelled_share)
        if self.min_precision is not None and not 0 < self.min_precision <= 1:
            raise AlpacaError(
                f"selftrain.min_precision must lie in (0, 1] (e.g. 0.8), or be null to train on any selection, got "
                f"{self.min_precision}."
            )
        if self.max_prior_distance is not None and not 0 < self.max_prior_distance <= 1:
            raise AlpacaError(
                f"selftrain.max_prior_distance must lie in (0, 1] (e.g. 0.3), or be null to train on any class "
                f"balance, got {self.max_prior_distance}."
            )
        if self.patience is not None and self.patience < 1:
            raise AlpacaError(f"selftrain.patience must be >= 1 or null (run every round), got {self.patience}.")
