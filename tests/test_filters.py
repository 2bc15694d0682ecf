"""Each pseudo-label filter does what its config name says, alone and composed."""

from __future__ import annotations

import numpy as np
import pytest

from alpaca_lightning.selftrain.filters import ClassBalancedTopK, ConfidenceThreshold, apply_filters


def probs_for(labels: list[int], confidence: list[float], classes: int = 3) -> np.ndarray:
    out = np.zeros((len(labels), classes))
    for i, (label, conf) in enumerate(zip(labels, confidence)):
        out[i] = (1 - conf) / (classes - 1)
        out[i, label] = conf
    return out


def test_confidence_threshold_keeps_confident_only() -> None:
    probs = probs_for([0, 1, 2, 0], [0.95, 0.5, 0.9, 0.89])
    assert apply_filters([ConfidenceThreshold(0.9)], probs, 1).tolist() == [True, False, True, False]


def test_top_k_per_class_selects_exactly_k_when_available() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=200).tolist()
    labels[:3] = [2, 2, 2]
    labels = [lab if lab != 2 or i < 3 else 0 for i, lab in enumerate(labels)]  # class 2 has only 3 members
    probs = probs_for(labels, rng.uniform(0.4, 1.0, size=200).tolist())
    keep = apply_filters([ClassBalancedTopK(k=10)], probs, 1)
    counts = np.bincount(probs.argmax(1)[keep], minlength=3)
    assert counts.tolist() == [10, 10, 3]
    for cls in range(2):  # and they are the most confident of their class
        members = probs.argmax(1) == cls
        assert probs.max(1)[keep & members].min() >= probs.max(1)[~keep & members].max()


def test_top_percentile_per_class() -> None:
    probs = probs_for([0] * 50 + [1] * 10, np.linspace(0.5, 1.0, 60).tolist(), classes=2)
    keep = apply_filters([ClassBalancedTopK(percentile=20)], probs, 1)
    assert np.bincount(probs.argmax(1)[keep]).tolist() == [10, 2]


def test_filters_compose_in_order() -> None:
    probs = probs_for([0, 0, 0, 1, 1], [0.99, 0.95, 0.6, 0.97, 0.7], classes=2)
    keep = apply_filters([ConfidenceThreshold(0.9), ClassBalancedTopK(k=1)], probs, 1)
    assert np.flatnonzero(keep).tolist() == [0, 3]


def test_bad_filter_settings_are_named() -> None:
    with pytest.raises(ValueError, match="threshold"):
        ConfidenceThreshold(1.5)
    with pytest.raises(ValueError, match="exactly one of `k`"):
        ClassBalancedTopK(k=3, percentile=10)
