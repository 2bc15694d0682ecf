"""Each pseudo-label filter does what its config name says, alone and composed."""

from __future__ import annotations

import numpy as np
import pytest

from alpaca_lightning.selftrain.filters import (
    ClassBalancedTopK,
    ConfidenceThreshold,
    Curriculum,
    DistributionAlignment,
    EntropyThreshold,
    SelectionContext,
    apply_filters,
)
from tests.conftest import probs_for


def round_context(round_index: int = 1, classes: int = 3) -> SelectionContext:
    return SelectionContext(round_index, np.full(classes, 1.0 / classes))


def test_confidence_threshold_keeps_confident_only() -> None:
    probs = probs_for([0, 1, 2, 0], [0.95, 0.5, 0.9, 0.89])
    assert apply_filters([ConfidenceThreshold(0.9)], probs, round_context()).tolist() == [True, False, True, False]


def test_top_k_per_class_selects_exactly_k_when_available() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=200).tolist()
    labels[:3] = [2, 2, 2]
    labels = [lab if lab != 2 or i < 3 else 0 for i, lab in enumerate(labels)]  # class 2 has only 3 members
    probs = probs_for(labels, rng.uniform(0.4, 1.0, size=200).tolist())
    keep = apply_filters([ClassBalancedTopK(k=10)], probs, round_context())
    counts = np.bincount(probs.argmax(1)[keep], minlength=3)
    assert counts.tolist() == [10, 10, 3]
    for cls in range(2):  # and they are the most confident of their class
        members = probs.argmax(1) == cls
        assert probs.max(1)[keep & members].min() >= probs.max(1)[~keep & members].max()


def test_top_percentile_per_class() -> None:
    probs = probs_for([0] * 50 + [1] * 10, np.linspace(0.5, 1.0, 60).tolist(), classes=2)
    keep = apply_filters([ClassBalancedTopK(percentile=20)], probs, round_context())
    assert np.bincount(probs.argmax(1)[keep]).tolist() == [10, 2]


# Class 0 at confidences 0.99, 0.95, 0.6, 0.55; class 1 at 0.97, 0.7. The two filters below do not commute:
# confidence >= 0.9 first leaves {0, 1 | 4}, whose top half per class is {0 | 4};
# the top half per class first gives {0, 1 | 4}, all of which pass confidence >= 0.9.
ORDER_PROBS = probs_for([0, 0, 0, 0, 1, 1], [0.99, 0.95, 0.6, 0.55, 0.97, 0.7], classes=2)
CONFIDENCE_FIRST, TOP_HALF_FIRST = [0, 4], [0, 1, 4]


def test_filters_compose_in_list_order() -> None:
    confidence, top_half = ConfidenceThreshold(0.9), ClassBalancedTopK(percentile=50)
    keep = apply_filters([confidence, top_half], ORDER_PROBS, round_context(classes=2))
    assert np.flatnonzero(keep).tolist() == CONFIDENCE_FIRST
    keep = apply_filters([top_half, confidence], ORDER_PROBS, round_context(classes=2))
    assert np.flatnonzero(keep).tolist() == TOP_HALF_FIRST


@pytest.mark.parametrize("order,expected", [("confidence,class_balanced", CONFIDENCE_FIRST),
                                            ("class_balanced,confidence", TOP_HALF_FIRST)])
def test_config_filter_order_is_the_order_applied(order: str, expected: list[int]) -> None:
    """filters=[a,b] on the command line reaches apply_filters as [a, b] (Hydra's list order, the pipeline's
    instantiate_list)."""
    from alpaca_lightning.pipeline import instantiate_list
    from tests.conftest import compose_config

    cfg = compose_config([f"filters=[{order}]", "filters.class_balanced.k=null",
                          "filters.class_balanced.percentile=50", "paths.output_dir=/tmp/unused"])
    filters = instantiate_list(cfg.filters)
    assert [f.name for f in filters] == order.split(",")
    assert np.flatnonzero(apply_filters(filters, ORDER_PROBS, round_context(classes=2))).tolist() == expected


def test_bad_filter_settings_are_named() -> None:
    with pytest.raises(ValueError, match="threshold"):
        ConfidenceThreshold(1.5)
    with pytest.raises(ValueError, match="exactly one of `k`"):
        ClassBalancedTopK(k=3, percentile=10)


def test_entropy_threshold_looks_at_the_whole_distribution() -> None:
    probs = np.array([[0.9, 0.05, 0.05], [0.48, 0.48, 0.04], [1 / 3, 1 / 3, 1 / 3], [0.98, 0.01, 0.01]])
    keep = apply_filters([EntropyThreshold(max_entropy=0.5)], probs, round_context())
    assert keep.tolist() == [True, False, False, True]
    # the top-probability threshold cannot tell the two-way tie from a spread-out distribution
    assert apply_filters([EntropyThreshold(max_entropy=1.0)], probs, round_context()).all()


# Curriculum input: class 0 in rows 0-9, class 1 in rows 10-16, class 2 in rows 17-19, each class at rising
# confidence, so a class's most confident rows are its last ones.
CURRICULUM_PROBS = probs_for([0] * 10 + [1] * 7 + [2] * 3,
                             [*np.linspace(0.5, 0.9, 10), *np.linspace(0.5, 0.9, 7), *np.linspace(0.5, 0.9, 3)])


@pytest.mark.parametrize("round_index,per_class,kept", [
    # start 20 %, step 30 %: ceil(20 % of 10, 7, 3) = 2, 2, 1
    (1, [2, 2, 1], [8, 9, 15, 16, 19]),
    # 50 %: 5, ceil(3.5) = 4, ceil(1.5) = 2
    (2, [5, 4, 2], [5, 6, 7, 8, 9, 13, 14, 15, 16, 18, 19]),
    # 80 %: 8, ceil(5.6) = 6, ceil(2.4) = 3
    (3, [8, 6, 3], [*range(2, 10), *range(11, 17), 17, 18, 19]),
    # 110 % capped at 100 %: every row
    (4, [10, 7, 3], list(range(20))),
])
def test_curriculum_keeps_the_top_share_of_each_class_per_round(round_index, per_class, kept) -> None:
    keep = apply_filters([Curriculum(start=20, step=30, maximum=100)], CURRICULUM_PROBS, round_context(round_index))
    assert np.bincount(CURRICULUM_PROBS.argmax(1)[keep], minlength=3).tolist() == per_class
    assert np.flatnonzero(keep).tolist() == kept


def test_curriculum_stops_growing_at_its_maximum() -> None:
    curriculum = Curriculum(start=20, step=30, maximum=60)
    counts = [np.bincount(CURRICULUM_PROBS.argmax(1)[apply_filters([curriculum], CURRICULUM_PROBS, round_context(k))],
                          minlength=3).tolist() for k in (1, 2, 3, 9)]
    # 20 %, 50 %, then 60 % for good: ceil(6.0, 4.2, 1.8) = 6, 5, 2
    assert counts == [[2, 2, 1], [5, 4, 2], [6, 5, 2], [6, 5, 2]]


def test_distribution_alignment_moves_the_histogram_toward_the_prior() -> None:
    rng = np.random.default_rng(2)
    labels = [0] * 160 + [1] * 30 + [2] * 10  # a teacher drifting to class 0
    probs = probs_for(labels, rng.uniform(0.5, 1.0, size=200).tolist())
    prior = np.array([0.4, 0.3, 0.3])
    keep = apply_filters([DistributionAlignment()], probs, SelectionContext(1, prior))
    before = np.bincount(labels, minlength=3) / 200
    after = np.bincount(probs.argmax(1)[keep], minlength=3) / keep.sum()
    assert np.abs(after - prior).sum() < np.abs(before - prior).sum()
    assert np.bincount(probs.argmax(1)[keep], minlength=3).tolist() == [80, 30, 10]  # class 0 capped at 0.4 * 200


def test_filters_start_from_the_eligible_mask() -> None:
    probs = probs_for([0, 0, 1, 1], [0.99, 0.95, 0.97, 0.7], classes=2)
    eligible = np.array([False, True, True, True])
    keep = apply_filters([ClassBalancedTopK(k=1)], probs, round_context(classes=2), keep=eligible)
    assert np.flatnonzero(keep).tolist() == [1, 2]


def test_skewed_selection_is_measured_and_reported(caplog) -> None:
    import logging

    from alpaca_lightning.selftrain.pseudo_labels import PseudoLabelSet
    from alpaca_lightning.selftrain.rounds import warn_if_skewed

    names = ["World", "Sports", "Business", "Sci/Tech"]
    labels = np.array([1] * 302 + [0] * 26 + [2])
    selected = PseudoLabelSet(np.arange(len(labels)), labels, np.eye(4)[labels], -np.ones(len(labels), dtype=int))
    with caplog.at_level(logging.INFO, logger="alpaca_lightning"):
        distance = warn_if_skewed(1, selected, np.full(4, 0.25), names)
    assert distance == pytest.approx(0.5 * (abs(302 / 329 - 0.25) + abs(26 / 329 - 0.25) + abs(1 / 329 - 0.25) + 0.25))
    assert "302 Sports" in caplog.text and "filters=[class_balanced]" in caplog.text
    balanced = PseudoLabelSet(np.arange(8), np.arange(8) % 4, np.eye(4)[np.arange(8) % 4], -np.ones(8, dtype=int))
    assert warn_if_skewed(1, balanced, np.full(4, 0.25), names) == pytest.approx(0.0)
