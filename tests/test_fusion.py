"""Each label-fusion rule combines teachers as its config name says."""

from __future__ import annotations

import numpy as np
import pytest

from alpaca_lightning.selftrain.fusion import (
    AgreementFusion,
    GeometricMeanFusion,
    MajorityVoteFusion,
    MeanFusion,
    TeacherOutput,
    WeightedMeanFusion,
)

A = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
B = np.array([[0.7, 0.3], [0.1, 0.9], [0.4, 0.6]])
C = np.array([[0.8, 0.2], [0.3, 0.7], [0.45, 0.55]])


def outputs(*probs: np.ndarray, accs: tuple[float, ...] = ()) -> list[TeacherOutput]:
    names = ["classifier", "cloze", "nsp"]
    return [TeacherOutput(names[i], p, accs[i] if accs else None) for i, p in enumerate(probs)]


def test_mean_averages_probabilities() -> None:
    fused = MeanFusion()(outputs(A, B))
    np.testing.assert_allclose(fused.probs, (A + B) / 2)
    assert fused.eligible.all()


def test_weighted_mean_uses_given_weights_or_validation_accuracy() -> None:
    given = WeightedMeanFusion({"classifier": 3, "cloze": 1})(outputs(A, B)).probs
    np.testing.assert_allclose(given, 0.75 * A + 0.25 * B)
    # validation accuracy above chance (0.5 for 2 classes): 0.9 -> 0.4, 0.6 -> 0.1
    np.testing.assert_allclose(WeightedMeanFusion()(outputs(A, B, accs=(0.9, 0.6))).probs, 0.8 * A + 0.2 * B)
    # a teacher at chance gets no say
    np.testing.assert_allclose(WeightedMeanFusion()(outputs(A, B, accs=(0.9, 0.5))).probs, A)
    with pytest.raises(ValueError, match="not active"):
        WeightedMeanFusion({"mlm": 1.0})(outputs(A, B))


def test_geometric_mean_is_a_normalised_product() -> None:
    fused = GeometricMeanFusion()(outputs(A, B)).probs
    expected = np.sqrt(A * B) / np.sqrt(A * B).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(fused, expected, rtol=1e-6)
    np.testing.assert_allclose(fused.sum(axis=1), 1.0)


def test_majority_vote_counts_top_classes() -> None:
    fused = MajorityVoteFusion()(outputs(A, B, C)).probs
    assert fused.argmax(axis=1).tolist() == [0, 1, 1]  # example 1: votes 0, 1, 1
    np.testing.assert_allclose(fused.max(axis=1), [1.0, 2 / 3, 1.0], atol=1e-5)


def test_agreement_only_drops_disagreements() -> None:
    fused = AgreementFusion()(outputs(A, B, C))
    assert fused.eligible.tolist() == [True, False, True]
    np.testing.assert_allclose(fused.probs, (A + B + C) / 3)


def test_fusion_checks_its_inputs() -> None:
    with pytest.raises(ValueError, match="at least one teacher"):
        MeanFusion()([])
    with pytest.raises(ValueError, match="shape"):
        MeanFusion()(outputs(A, B[:2]))


def test_a_teacher_joins_the_fusion_only_where_it_lowers_validation_nll() -> None:
    from alpaca_lightning.selftrain.fusion import ProductFusion, TeacherOutput, helpful_teachers

    gold = np.array([0, 1, 0, 1])
    first = TeacherOutput("classifier", np.array([[0.6, 0.4], [0.4, 0.6], [0.4, 0.6], [0.6, 0.4]]))  # half right
    informed = TeacherOutput("similarity", np.array([[0.8, 0.2], [0.2, 0.8], [0.8, 0.2], [0.2, 0.8]]))
    wrong = TeacherOutput("similarity", np.array([[0.2, 0.8], [0.8, 0.2], [0.2, 0.8], [0.8, 0.2]]))
    assert helpful_teachers(ProductFusion(), [first, informed], gold) == [0, 1]
    assert helpful_teachers(ProductFusion(), [first, wrong], gold) == [0]
    assert helpful_teachers(ProductFusion(), [first, wrong, informed], gold) == [0, 2]
    assert helpful_teachers(ProductFusion(), [first, wrong], np.full(4, -1)) == [0, 1]  # no gold: fuse them all
