"""The pool's class prior: estimated by EM from the teacher when not given, so that an imbalanced pool is not
called skewed and distribution alignment does not force the labelled set's uniform shares on it."""

from __future__ import annotations

import numpy as np
import pytest

from alpaca_lightning.errors import AlpacaError
from alpaca_lightning.selftrain.filters import DistributionAlignment, SelectionContext
from alpaca_lightning.selftrain.prior import checked_prior, estimate_class_prior
from alpaca_lightning.selftrain.pseudo_labels import PseudoLabelSet
from alpaca_lightning.selftrain.rounds import warn_if_skewed


def calibrated_teacher(pool_prior: list[float], n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gold labels drawn with ``pool_prior`` and posteriors of a teacher trained under a uniform prior: two
    Gaussian classes, probabilities from the exact likelihood ratio."""
    rng = np.random.default_rng(seed)
    gold = rng.choice(len(pool_prior), size=n, p=pool_prior)
    x = rng.normal(loc=np.where(gold == 0, -1.0, 1.0), scale=1.0)
    likelihood = np.stack([np.exp(-0.5 * (x + 1) ** 2), np.exp(-0.5 * (x - 1) ** 2)], axis=1)
    return likelihood / likelihood.sum(axis=1, keepdims=True), gold


def test_em_recovers_an_imbalanced_pool_prior() -> None:
    probs, gold = calibrated_teacher([0.87, 0.13])
    naive = probs.mean(axis=0)  # the teacher's average posterior is pulled toward its uniform training prior
    estimate = estimate_class_prior(probs, np.array([0.5, 0.5]))
    truth = np.bincount(gold) / len(gold)
    assert abs(estimate[0] - truth[0]) < 0.03 < abs(naive[0] - truth[0])
    balanced, _ = calibrated_teacher([0.5, 0.5])
    np.testing.assert_allclose(estimate_class_prior(balanced, np.array([0.5, 0.5])), [0.5, 0.5], atol=0.03)


def test_a_correct_selection_of_an_imbalanced_pool_is_not_called_skewed(caplog) -> None:
    probs, gold = calibrated_teacher([0.87, 0.13])
    selected = PseudoLabelSet(np.arange(len(gold)), gold, np.eye(2)[gold], gold)  # the true labels, 87/13
    uniform = warn_if_skewed(1, selected, np.array([0.5, 0.5]), ["a", "b"])
    estimated = warn_if_skewed(1, selected, estimate_class_prior(probs, np.array([0.5, 0.5])), ["a", "b"])
    assert uniform > 0.3 and estimated < 0.05


def test_alignment_follows_the_given_prior() -> None:
    probs, _ = calibrated_teacher([0.87, 0.13])
    keep = np.ones(len(probs), dtype=bool)
    aligned = DistributionAlignment()(probs, keep, SelectionContext(1, np.array([0.87, 0.13])))
    counts = np.bincount(probs[aligned].argmax(1), minlength=2)
    assert counts[0] > 5 * counts[1]


def test_given_prior_is_checked() -> None:
    np.testing.assert_allclose(checked_prior([0.87, 0.13], ["a", "b"]), [0.87, 0.13])
    assert checked_prior(None, ["a", "b"]) is None
    with pytest.raises(AlpacaError, match="one non-negative share per label"):
        checked_prior([0.5, 0.3, 0.2], ["a", "b"])
