"""Label fusion: several teachers' class probabilities over the same examples become one set of probabilities,
plus a mask of the examples eligible for selection (``agreement`` uses it; the others keep everything).

The same fusion runs on the pool (for pseudo-labels) and on validation (to score and calibrate the fused teacher).
Adding a rule means one class here and one YAML file in conf/fusion/.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alpaca_lightning.selftrain.calibration import nll


@dataclass
class TeacherOutput:
    """One teacher's probabilities over one split (rows = dataset index), with its validation accuracy."""

    name: str
    probs: np.ndarray
    val_acc: float | None = None


@dataclass
class Fused:
    probs: np.ndarray
    eligible: np.ndarray  # bool per example


def _stack(outputs: list[TeacherOutput]) -> np.ndarray:
    if not outputs:
        raise ValueError("fusion needs at least one teacher (teachers=[classifier] at least).")
    shapes = {o.probs.shape for o in outputs}
    if len(shapes) != 1:
        raise ValueError(f"teachers disagree on the shape of their predictions: {sorted(shapes)}.")
    return np.stack([o.probs for o in outputs])  # (teachers, examples, classes)


def _normalize(scores: np.ndarray) -> np.ndarray:
    return scores / scores.sum(axis=1, keepdims=True)


class Fusion:
    name = "fusion"

    def __call__(self, outputs: list[TeacherOutput]) -> Fused:
        stacked = _stack(outputs)
        return Fused(self.combine(stacked, outputs), np.ones(stacked.shape[1], dtype=bool))

    def combine(self, stacked: np.ndarray, outputs: list[TeacherOutput]) -> np.ndarray:
        raise NotImplementedError


class MeanFusion(Fusion):
    """The average of the teachers' probabilities."""

    name = "mean"

    def combine(self, stacked: np.ndarray, outputs: list[TeacherOutput]) -> np.ndarray:
        return stacked.mean(axis=0)


class WeightedMeanFusion(Fusion):
    """A weighted average. ``weights`` maps teacher names to weights; without it, each teacher weighs its
    validation accuracy above chance, so a teacher no better than guessing gets no say."""

    name = "weighted"

    def __init__(self, weights: dict[str, float] | None = None) -> None:
        self.weights = dict(weights) if weights else None

    @property
    def uses_validation(self) -> bool:
        """True when the weights come from the validation set that also compares the rounds."""
        return self.weights is None

    def teacher_weights(self, outputs: list[TeacherOutput], num_classes: int) -> np.ndarray:
        if self.weights is not None:
            unknown = sorted(set(self.weights) - {o.name for o in outputs})
            if unknown:
                raise ValueError(f"fusion.weights names teachers that are not active: {unknown}.")
            w = np.array([self.weights.get(o.name, 0.0) for o in outputs], dtype=float)
        else:
            if any(o.val_acc is None for o in outputs):
                raise ValueError("fusion=weighted without weights needs every teacher's validation accuracy.")
            w = np.array([max(o.val_acc - 1.0 / num_classes, 0.0) for o in outputs], dtype=float)
        # All teachers at chance (or all weights 0): fall back to the plain mean rather than divide by zero.
        return w / w.sum() if w.sum() > 0 else np.full(len(outputs), 1.0 / len(outputs))

    def combine(self, stacked: np.ndarray, outputs: list[TeacherOutput]) -> np.ndarray:
        w = self.teacher_weights(outputs, stacked.shape[2])
        return np.tensordot(w, stacked, axes=1)


def _normalized_power_of_product(stacked: np.ndarray, power: float) -> np.ndarray:
    """``(prod_t p_t) ** power``, normalised per example, computed in log space."""
    log_scores = power * np.log(np.clip(stacked, 1e-12, 1.0)).sum(axis=0)
    return _normalize(np.exp(log_scores - log_scores.max(axis=1, keepdims=True)))


class GeometricMeanFusion(Fusion):
    """Product of experts: the normalised geometric mean. One confident 'no' from any teacher vetoes a class."""

    name = "geometric"

    def combine(self, stacked: np.ndarray, outputs: list[TeacherOutput]) -> np.ndarray:
        return _normalized_power_of_product(stacked, 1.0 / len(stacked))


class ProductFusion(Fusion):
    """Product of experts: the normalised product of the teachers' probabilities, i.e. Bayes' rule for teachers whose
    errors are independent. Each teacher's sharpness is its say, so calibrate them first
    (``calibration=teachers``): a calibrated teacher near chance is flat and barely moves the product."""

    name = "product"

    def combine(self, stacked: np.ndarray, outputs: list[TeacherOutput]) -> np.ndarray:
        return _normalized_power_of_product(stacked, 1.0)


class MajorityVoteFusion(Fusion):
    """Each teacher votes for its top class; the fused distribution is the vote share, so its confidence is the
    level of agreement. Ties between classes are broken by the mean probability."""

    name = "vote"

    def combine(self, stacked: np.ndarray, outputs: list[TeacherOutput]) -> np.ndarray:
        teachers, examples, classes = stacked.shape
        votes = np.zeros((examples, classes))
        for top in stacked.argmax(axis=2):
            votes[np.arange(examples), top] += 1.0
        tie_break = 1e-6 * stacked.mean(axis=0)
        return _normalize(votes / teachers + tie_break)


class AgreementFusion(MeanFusion):
    """The mean of the teachers' probabilities, eligible only where every teacher's top class is the same."""

    name = "agreement"

    def __call__(self, outputs: list[TeacherOutput]) -> Fused:
        stacked = _stack(outputs)
        tops = stacked.argmax(axis=2)
        return Fused(self.combine(stacked, outputs), (tops == tops[0]).all(axis=0))


def helpful_teachers(fusion: Fusion, val_outputs: list[TeacherOutput], val_gold: np.ndarray) -> list[int]:
    """Positions of the teachers to fuse: the first always; each later one, in order, only where adding it lowers
    the fused teacher's validation NLL. A teacher that makes the fused predictions on validation worse is left out
    of this round (e.g. zero-shot label sentences on a task whose labels they describe badly)."""
    known = np.asarray(val_gold) >= 0
    if not known.any():
        return list(range(len(val_outputs)))
    gold = np.asarray(val_gold)[known]

    def val_nll(positions: list[int]) -> float:
        return nll(fusion([val_outputs[i] for i in positions]).probs[known], gold)

    kept, kept_nll = [0], val_nll([0])
    for i in range(1, len(val_outputs)):
        candidate_nll = val_nll(kept + [i])
        if candidate_nll < kept_nll:
            kept, kept_nll = kept + [i], candidate_nll
    return kept
