"""Pseudo-label quality filters. Each takes the (fused) teacher's class probabilities over the pool and the mask of
examples still kept, and returns a narrower mask. Filters compose in the order the config lists them
(``filters=[...]``); the run's ``SelectionContext`` tells them the round and the pool's class prior (given or estimated).

Adding a filter means one class here and one YAML file in conf/filters/.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class SelectionContext:
    round_index: int  # 1 for the first pseudo-label round
    class_prior: np.ndarray  # the pool's class distribution: task.class_prior, or estimated (selftrain/prior.py)
    # the example each unit belongs to (token tasks: a word's sentence); None where a unit is a whole example
    unit_groups: np.ndarray | None = None


class PseudoLabelFilter:
    name = "filter"

    def __call__(self, probs: np.ndarray, keep: np.ndarray, context: SelectionContext) -> np.ndarray:
        raise NotImplementedError


class ConfidenceThreshold(PseudoLabelFilter):
    """Keep examples whose top class probability is at least ``threshold``."""

    name = "confidence"

    def __init__(self, threshold: float = 0.9) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"filters.{self.name}.threshold must be in [0, 1], got {threshold}.")
        self.threshold = threshold

    def __call__(self, probs: np.ndarray, keep: np.ndarray, context: SelectionContext) -> np.ndarray:
        return keep & (probs.max(axis=1) >= self.threshold)


class SentenceConfidence(ConfidenceThreshold):
    """Keep whole examples: a unit is kept when every unit of its example (every word of its sentence) is kept and
    at least ``threshold`` confident, so one doubtful word drops its sentence. Where a unit is a whole example,
    this is the confidence threshold."""

    name = "sentence_confidence"

    def __call__(self, probs: np.ndarray, keep: np.ndarray, context: SelectionContext) -> np.ndarray:
        confident = super().__call__(probs, keep, context)
        groups = context.unit_groups
        if groups is None:
            return confident
        doubtful = np.unique(groups[~confident])
        return confident & ~np.isin(groups, doubtful)


class EntropyThreshold(PseudoLabelFilter):
    """Keep examples whose prediction entropy, normalised to [0, 1] by log(classes), is at most ``max_entropy``.

    Unlike the top-probability threshold it looks at the whole distribution: two classes tied far above the rest
    count as uncertain.
    """

    name = "entropy"

    def __init__(self, max_entropy: float = 0.5) -> None:
        if not 0.0 <= max_entropy <= 1.0:
            raise ValueError(f"filters.entropy.max_entropy must be in [0, 1], got {max_entropy}.")
        self.max_entropy = max_entropy

    def __call__(self, probs: np.ndarray, keep: np.ndarray, context: SelectionContext) -> np.ndarray:
        return keep & (normalized_entropy(probs) <= self.max_entropy)


def normalized_entropy(probs: np.ndarray) -> np.ndarray:
    p = np.clip(probs, 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=1) / np.log(max(probs.shape[1], 2))


def top_per_class(
    probs: np.ndarray, keep: np.ndarray, take: Callable[[int, int], int]
) -> np.ndarray:
    """Per predicted class c, keep the ``take(c, members)`` most confident kept examples."""
    labels, confidence = probs.argmax(axis=1), probs.max(axis=1)
    out = np.zeros_like(keep)
    for cls in range(probs.shape[1]):
        members = np.flatnonzero(keep & (labels == cls))
        # stable sort on -confidence: ties resolve by pool index, the same on every run
        best = members[np.argsort(-confidence[members], kind="stable")[: take(cls, len(members))]]
        out[best] = True
    return out


def percentile_count(members: int, percentile: float) -> int:
    return int(np.ceil(members * percentile / 100.0))


class ClassBalancedTopK(PseudoLabelFilter):
    """Per predicted class, keep the ``k`` most confident examples, or the top ``percentile`` % of that class.

    Balancing by class stops the majority class from taking over the pseudo-labels (SentAugment-style top-K).
    """

    name = "class_balanced"

    def __init__(self, k: int | None = None, percentile: float | None = None) -> None:
        if (k is None) == (percentile is None):
            raise ValueError("filters.class_balanced needs exactly one of `k` (per class) or `percentile` (0-100).")
        if percentile is not None and not 0 < percentile <= 100:
            raise ValueError(f"filters.class_balanced.percentile must be in (0, 100], got {percentile}.")
        self.k = k
        self.percentile = percentile

    def __call__(self, probs: np.ndarray, keep: np.ndarray, context: SelectionContext) -> np.ndarray:
        if self.k is not None:
            return top_per_class(probs, keep, lambda cls, members: min(self.k, members))
        return top_per_class(probs, keep, lambda cls, members: percentile_count(members, self.percentile))


class Curriculum(PseudoLabelFilter):
    """Curriculum pseudo-labelling: per class, the top ``start`` % in round 1, ``start + step`` % in round 2, ...
    up to ``maximum`` %. Easy (confident) examples come first; pair it with ``student_init=reset`` so
    each round's student learns the grown set from scratch instead of inheriting the last round's mistakes.
    """

    name = "curriculum"

    def __init__(self, start: float = 20.0, step: float = 20.0, maximum: float = 100.0) -> None:
        if not (0 < start <= 100 and step >= 0 and 0 < maximum <= 100):
            raise ValueError("filters.curriculum needs 0 < start <= 100, step >= 0 and 0 < maximum <= 100.")
        self.start, self.step, self.maximum = start, step, maximum

    def percentile(self, round_index: int) -> float:
        return min(self.start + self.step * (round_index - 1), self.maximum)

    def __call__(self, probs: np.ndarray, keep: np.ndarray, context: SelectionContext) -> np.ndarray:
        percentile = self.percentile(context.round_index)
        return top_per_class(probs, keep, lambda cls, members: percentile_count(members, percentile))


class DistributionAlignment(PseudoLabelFilter):
    """Align the selected class histogram with the pool's class prior: of the ``n`` examples still kept, class c
    keeps at most ``ceil(prior_c * n)``, most confident first. A teacher that drifts toward one class cannot
    flood the student with it.
    """

    name = "distribution_alignment"

    def __call__(self, probs: np.ndarray, keep: np.ndarray, context: SelectionContext) -> np.ndarray:
        prior = np.asarray(context.class_prior, dtype=float)
        if prior.shape != (probs.shape[1],) or not np.isclose(prior.sum(), 1.0):
            raise ValueError(f"distribution alignment needs a class prior over {probs.shape[1]} classes, got {prior}.")
        total = int(keep.sum())
        return top_per_class(probs, keep, lambda cls, members: min(members, int(np.ceil(prior[cls] * total))))


def apply_filters(
    filters: list[PseudoLabelFilter], probs: np.ndarray, context: SelectionContext, keep: np.ndarray | None = None
) -> np.ndarray:
    """``keep``: the examples eligible before filtering (e.g. the fusion's agreement mask); all by default."""
    keep = np.ones(len(probs), dtype=bool) if keep is None else keep.copy()
    for pseudo_filter in filters:
        keep = pseudo_filter(probs, keep, context)
    return keep
