"""The small exact tests that teacher selection and the guarded schedule decide by."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alpaca_lightning.selftrain.stats import (
    above_chance_p_value,
    agreement_z,
    binomial_tail,
    class_share_distance,
    sign_test,
)


@pytest.mark.parametrize(("successes", "trials", "rate"), [(11, 16, 0.5), (0, 5, 0.3), (3, 40, 0.25), (40, 40, 0.9)])
def test_binomial_tail_is_the_exact_upper_tail(successes, trials, rate) -> None:
    exact = sum(math.comb(trials, j) * rate ** j * (1 - rate) ** (trials - j) for j in range(successes, trials + 1))
    assert binomial_tail(successes, trials, rate) == pytest.approx(exact, rel=1e-9)


def test_above_chance_compares_with_labels_drawn_with_the_same_class_shares() -> None:
    gold = np.array([0] * 12 + [1] * 4)
    # naming class 0 everywhere is 75% right, exactly what its shares give by chance
    assert above_chance_p_value(np.zeros(16, int), gold) == pytest.approx(binomial_tail(12, 16, 0.75))
    assert above_chance_p_value(np.zeros(16, int), gold) > 0.5
    # the gold labels themselves: chance would be right 0.75 * 0.75 + 0.25 * 0.25 of the time
    assert above_chance_p_value(gold.copy(), gold) == pytest.approx(0.625 ** 16)
    assert above_chance_p_value(np.zeros(3, int), np.full(3, -1)) == 1.0  # no gold: no evidence


def test_agreement_z_is_zero_for_independent_labelings_and_large_for_equal_ones() -> None:
    rng = np.random.default_rng(0)
    first, second = rng.integers(0, 3, 3000), rng.integers(0, 3, 3000)
    assert abs(agreement_z(first, second)) < 3
    assert agreement_z(first, first) > 30
    # one labeling naming a single class everywhere: its agreement is exactly what chance gives
    assert agreement_z(first, np.zeros(3000, int)) == pytest.approx(0.0, abs=1e-9)


def test_class_share_distance_is_total_variation() -> None:
    assert class_share_distance(np.array([0, 0, 0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.25)
    assert class_share_distance(np.array([1, 1]), np.array([1.0, 0.0])) == pytest.approx(1.0)


def test_sign_test_counts_only_the_examples_where_two_models_differ() -> None:
    before = np.array([True, True, True, True, True, False, False])
    after = np.array([False, False, False, False, True, False, True])
    assert sign_test(before, after) == (4, 1, pytest.approx(binomial_tail(4, 5, 0.5)))
    assert sign_test(before, before)[2] == 1.0  # no difference, no evidence

