"""Pseudo-label filters. Each takes the teacher's class probabilities over the pool and the mask of examples
still kept, and returns a narrower mask. Filters compose in the order the config lists them (``filters=[...]``).

Adding a filter means one class here and one YAML file in conf/filters/.
"""

from __future__ import annotations

import numpy as np


class PseudoLabelFilter:
    name = "filter"

    def __call__(self, probs: np.ndarray, keep: np.ndarray, round_index: int) -> np.ndarray:
        raise NotImplementedError


class ConfidenceThreshold(PseudoLabelFilter):
    """Keep examples whose top class probability is at least ``threshold``."""

    name = "confidence"

    def __init__(self, threshold: float = 0.9) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"filters.confidence.threshold must be in [0, 1], got {threshold}.")
        self.threshold = threshold

    def __call__(self, probs: np.ndarray, keep: np.ndarray, round_index: int) -> np.ndarray:
        return keep & (probs.max(axis=1) >= self.threshold)


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

    def __call__(self, probs: np.ndarray, keep: np.ndarray, round_index: int) -> np.ndarray:
        labels, confidence = probs.argmax(axis=1), probs.max(axis=1)
        out = np.zeros_like(keep)
        for cls in range(probs.shape[1]):
            members = np.flatnonzero(keep & (labels == cls))
            if self.k is not None:
                take = min(self.k, len(members))
            else:
                take = int(np.ceil(len(members) * self.percentile / 100.0))
            # stable sort on -confidence: ties resolve by pool index, the same on every run
            best = members[np.argsort(-confidence[members], kind="stable")[:take]]
            out[best] = True
        return out


def apply_filters(filters: list[PseudoLabelFilter], probs: np.ndarray, round_index: int) -> np.ndarray:
    keep = np.ones(len(probs), dtype=bool)
    for pseudo_filter in filters:
        keep = pseudo_filter(probs, keep, round_index)
    return keep
