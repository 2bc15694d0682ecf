"""The training plan: where round 0 starts, and each fit's learning rate and epochs, resolved once after the
round-0 stages. The round loop, the teachers and the student initialisations read it; nothing changes it.

A stage may prefer a fine-tuning rate for what descends from its encoder (``Stage.finetune_lr``, e.g. the probe's
2e-5, SetFit's body rate); ``selftrain.supervised_lr`` and ``selftrain.student_lr`` override it when set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TrainingPlan:
    encoder_path: str  # round 0's starting encoder: the backbone, or the last round-0 stage's output
    supervised_lr: float | None  # round 0 and other labelled-only fits (None: the model's optimizer lr)
    student_lr: float | None  # the students of rounds >= 1
    supervised_epochs: int
    student_epochs: int


def resolve_plan(settings: Any, stages: Sequence[Any], encoder_path: str) -> TrainingPlan:
    """The plan of a run whose round-0 stages produced ``encoder_path``; ``settings`` is the RoundSettings."""
    preferred = [stage.finetune_lr for stage in stages if stage.finetune_lr is not None]
    default_lr = preferred[-1] if preferred else None
    return TrainingPlan(
        encoder_path=encoder_path,
        supervised_lr=settings.supervised_lr or default_lr,
        student_lr=settings.student_lr or default_lr,
        supervised_epochs=settings.supervised_epochs,
        student_epochs=settings.student_epochs,
    )
