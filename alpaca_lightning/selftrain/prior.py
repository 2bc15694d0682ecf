"""The class prior of the unlabelled pool, which filters and the skew check compare a selection with.

K labels per class make the labelled prior uniform by construction, whatever the pool holds, so it cannot say
whether a selection is skewed. The prior is either given (``task.class_prior``) or estimated from the teacher's
probabilities on the pool by EM (Saerens, Latinne & Decaestecker, 2002): re-weight each posterior by the ratio of
the new prior to the prior the teacher was trained under, take the mean as the new prior, repeat.
"""

from __future__ import annotations

import numpy as np

from alpaca_lightning.errors import AlpacaError


def estimate_class_prior(
    pool_probs: np.ndarray, train_prior: np.ndarray, iterations: int = 200, tolerance: float = 1e-8
) -> np.ndarray:
    """EM estimate of the pool's class prior from a teacher trained under ``train_prior``."""
    train_prior = np.clip(np.asarray(train_prior, dtype=float), 1e-12, None)
    probs = np.clip(np.asarray(pool_probs, dtype=float), 1e-12, None)
    prior = train_prior.copy()
    for _ in range(iterations):
        adjusted = probs * (prior / train_prior)
        adjusted /= adjusted.sum(axis=1, keepdims=True)
        new_prior = adjusted.mean(axis=0)
        if np.abs(new_prior - prior).max() < tolerance:
            return new_prior
        prior = new_prior
    return prior


def pool_prior(given: np.ndarray | None, pool_probs: np.ndarray, labelled_labels: np.ndarray) -> np.ndarray:
    """The pool's class prior: the one given (task.class_prior), or the EM estimate from a teacher's pool
    probabilities, trained under the labelled set's class frequencies (uniform under K labels per class). The
    counts are add-one smoothed: a class absent from the labelled set (a tag that K sentences never show) would
    otherwise get an infinite weight in the EM update."""
    if given is not None:
        return given
    counts = np.bincount(labelled_labels, minlength=pool_probs.shape[1]).astype(float) + 1.0
    return estimate_class_prior(pool_probs, counts / counts.sum())


def checked_prior(given: list[float] | None, label_names: list[str]) -> np.ndarray | None:
    """``task.class_prior`` as an array, or None; it must give one positive share per label, summing to 1."""
    if given is None:
        return None
    prior = np.asarray(given, dtype=float)
    if prior.shape != (len(label_names),) or (prior < 0).any() or not np.isclose(prior.sum(), 1.0, atol=1e-3):
        raise AlpacaError(
            f"task.class_prior={list(given)} must give one non-negative share per label {label_names}, summing to "
            f"1 (e.g. task.class_prior=[0.87,0.13]), or be null to estimate it from the teacher on the pool."
        )
    return prior / prior.sum()
