"""Small exact tests on what a round can count: right answers on gold labels, agreement on the pool, class shares.

A round's decisions often rest on a few dozen gold labels, so these are exact or standard-error based, never a bare
difference of two accuracies.
"""

from __future__ import annotations

from math import lgamma

import numpy as np


def above_chance_p_value(predicted: np.ndarray, gold: np.ndarray) -> float:
    """One-sided binomial p-value of at least this many right answers from labels drawn independently of the gold
    ones with the same class shares as ``predicted`` (chance accuracy: the sum over classes of predicted share times
    gold share; a teacher that names one class everywhere is at chance whatever the balance). 1.0 without gold."""
    known = gold >= 0
    n = int(known.sum())
    if n == 0:
        return 1.0
    predicted, gold = predicted[known], gold[known]
    classes = int(max(predicted.max(), gold.max())) + 1
    chance = float(np.dot(np.bincount(predicted, minlength=classes), np.bincount(gold, minlength=classes))) / n ** 2
    return binomial_tail(int((predicted == gold).sum()), n, chance)


def binomial_tail(successes: int, trials: int, rate: float) -> float:
    """P(X >= successes) for X ~ Binomial(trials, rate), summed exactly in log space."""
    if successes <= 0:
        return 1.0
    if rate <= 0.0 or rate >= 1.0:
        return float(rate >= 1.0)
    j = np.arange(successes, trials + 1)
    log_terms = (lgamma(trials + 1) - np.vectorize(lgamma)(j + 1) - np.vectorize(lgamma)(trials - j + 1)
                 + j * np.log(rate) + (trials - j) * np.log1p(-rate))
    return float(min(1.0, np.exp(log_terms).sum()))


def agreement_z(first: np.ndarray, second: np.ndarray) -> float:
    """How many standard errors two labelings' agreement lies above the agreement their class distributions give
    by chance (Cohen's kappa over its standard error under independence)."""
    n = len(first)
    if n == 0:
        return 0.0
    classes = int(max(first.max(), second.max())) + 1
    observed = float((first == second).mean())
    chance = float(np.dot(np.bincount(first, minlength=classes), np.bincount(second, minlength=classes))) / n ** 2
    if chance >= 1.0:
        return 0.0  # both name one class everywhere: agreement says nothing
    kappa = (observed - chance) / (1 - chance)
    return float(kappa / np.sqrt(chance / (n * (1 - chance))))


def class_share_distance(predicted: np.ndarray, prior: np.ndarray) -> float:
    """Total variation distance between the predicted class shares and ``prior`` (0: same shape, 1: disjoint)."""
    if len(predicted) == 0:
        return 0.0
    shares = np.bincount(predicted, minlength=len(prior)) / len(predicted)
    return float(0.5 * np.abs(shares - prior).sum())


def sign_test(before: np.ndarray, after: np.ndarray) -> tuple[int, int, float]:
    """Paired comparison of two models' per-example correctness (booleans, same examples): the examples only
    ``before`` gets right, those only ``after`` gets right, and the one-sided p-value that ``after`` is no worse
    (exact sign test on the discordant examples)."""
    lost = int((before & ~after).sum())
    gained = int((~before & after).sum())
    return lost, gained, binomial_tail(lost, lost + gained, 0.5)
