"""Teacher selection: which of a round's teachers the fusion combines. One class + one YAML in
conf/teacher_selection/ per rule; the first teacher of ``teachers=[...]`` (the round's classifier) always stays.

all         every teacher, every round
validation  a teacher joins where it lowers the fused validation NLL
checked     the validation rule, among the teachers that pass three checks first: above chance on the gold labels
            it never learned from, agreeing with the classifier on the pool more than chance would, and predicting
            a class distribution near the pool's prior (the last two need no labels)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from alpaca_lightning.console import info
from alpaca_lightning.errors import AlpacaError
from alpaca_lightning.selftrain.fusion import Fusion, TeacherOutput, helpful_teachers
from alpaca_lightning.selftrain.stats import above_chance_p_value, agreement_z, class_share_distance


@dataclass(frozen=True)
class TeacherEvidence:
    """What a round knows of one teacher when it decides whether to fuse it."""

    validation: TeacherOutput  # as the fusion reads it (calibrated)
    pool: np.ndarray  # its class probabilities over the pool
    gold_probs: np.ndarray  # its probabilities over every gold-labelled example it never learned from ...
    gold: np.ndarray  # ... and their labels

    @property
    def name(self) -> str:
        return self.validation.name


class TeacherSelection:
    def select(self, k: int, fusion: Fusion, teachers: list[TeacherEvidence], val_gold: np.ndarray,
               prior: np.ndarray, diagnostics: dict[str, Any]) -> list[int]:
        """Positions (in ``teachers`` order) of the teachers that round ``k`` fuses; ``prior`` is the pool's class
        prior (given, or estimated from the classifier)."""
        raise NotImplementedError


class AllTeachers(TeacherSelection):
    """Every teacher, every round."""

    def select(self, k: int, fusion: Fusion, teachers: list[TeacherEvidence], val_gold: np.ndarray,
               prior: np.ndarray, diagnostics: dict[str, Any]) -> list[int]:
        return list(range(len(teachers)))


class ValidationSelection(TeacherSelection):
    """A teacher after the first joins only where it lowers the fused validation NLL (recorded as
    ``teachers/fused``): zero-shot label sentences that describe a task's labels badly are then left out."""

    def select(self, k: int, fusion: Fusion, teachers: list[TeacherEvidence], val_gold: np.ndarray,
               prior: np.ndarray, diagnostics: dict[str, Any]) -> list[int]:
        if len(teachers) < 2:
            return [0]
        candidates = self.candidates(teachers, prior, diagnostics)
        kept = [candidates[i] for i in
                helpful_teachers(fusion, [teachers[i].validation for i in candidates], val_gold)]
        diagnostics["teachers/fused"] = "+".join(teachers[i].name for i in kept)
        info(f"round {k}: fusing {diagnostics['teachers/fused']} (a teacher joins only where it lowers the "
             f"fused validation NLL; teacher_selection=all fuses every teacher)")
        return kept

    def candidates(self, teachers: list[TeacherEvidence], prior: np.ndarray,
                   diagnostics: dict[str, Any]) -> list[int]:
        """The teachers that the validation NLL rule may add (the first always comes first)."""
        return list(range(len(teachers)))


class CheckedSelection(ValidationSelection):
    """The validation rule among the teachers that pass its checks, each recorded per teacher
    (``teacher_<name>/check_...``):

    - gold: its accuracy on every gold label it never learned from (validation, and the labelled set for a teacher
      that never trained on it) is above chance, one-sided exact binomial p-value below ``gold_alpha``;
    - agreement (``min_agreement_z``, off when null): its argmax agrees with the classifier's on the pool more often
      than their two class distributions would by chance, by at least that many standard errors (Cohen's kappa);
    - prior (``max_prior_distance``, off when null): its predicted class shares on the pool lie within that total
      variation distance of the pool's prior as the classifier alone estimates it.

    A handful of validation labels can flatter a teacher at chance (16 examples move accuracy by 6 points each), and
    the fused NLL rule alone lets such a teacher in; a binomial test asks how often chance would look as good. The
    two label-free checks read the whole pool, but against the classifier: where the classifier is itself near
    chance (where a zero-shot teacher helps most) a good teacher fails them, so they are off by default."""

    def __init__(self, gold_alpha: float = 0.05, min_agreement_z: float | None = None,
                 max_prior_distance: float | None = None) -> None:
        if not 0 < gold_alpha <= 1:
            raise AlpacaError(f"teacher_selection.gold_alpha must lie in (0, 1] (1: no gold check), got {gold_alpha}.")
        if max_prior_distance is not None and not 0 < max_prior_distance <= 1:
            raise AlpacaError(
                f"teacher_selection.max_prior_distance must lie in (0, 1], or be null (no prior check), got "
                f"{max_prior_distance}."
            )
        self.gold_alpha = gold_alpha
        self.min_agreement_z = min_agreement_z
        self.max_prior_distance = max_prior_distance

    def candidates(self, teachers: list[TeacherEvidence], prior: np.ndarray,
                   diagnostics: dict[str, Any]) -> list[int]:
        classifier = teachers[0].pool.argmax(axis=1)
        kept = [0]
        for i, teacher in enumerate(teachers[1:], start=1):
            checks = {
                "gold_p": above_chance_p_value(teacher.gold_probs.argmax(axis=1), teacher.gold),
                "agreement_z": agreement_z(teacher.pool.argmax(axis=1), classifier),
                "prior_distance": class_share_distance(teacher.pool.argmax(axis=1), prior),
            }
            diagnostics.update({f"teacher_{teacher.name}/check_{key}": value for key, value in checks.items()})
            failed = self.failed(checks)
            if failed:
                info(f"teacher '{teacher.name}' is not fused: {failed}")
            else:
                kept.append(i)
        return kept

    def failed(self, checks: dict[str, float]) -> str:
        """Why the checks refuse a teacher, or "" when it passes."""
        reasons = []
        if not checks["gold_p"] < self.gold_alpha:
            reasons.append(f"not above chance on its gold labels (p={checks['gold_p']:.2f}, "
                           f"teacher_selection.gold_alpha={self.gold_alpha})")
        if self.min_agreement_z is not None and not checks["agreement_z"] >= self.min_agreement_z:
            reasons.append(f"agrees with the classifier on the pool no more than chance would (z="
                           f"{checks['agreement_z']:.1f}, teacher_selection.min_agreement_z={self.min_agreement_z})")
        if self.max_prior_distance is not None and checks["prior_distance"] > self.max_prior_distance:
            reasons.append(f"its class shares on the pool are {checks['prior_distance']:.2f} from the prior "
                           f"(teacher_selection.max_prior_distance={self.max_prior_distance})")
        return "; ".join(reasons)
