"""Label spreading on a kNN graph: labels follow clusters, and the spread mass follows the class prior."""

from __future__ import annotations

import numpy as np
import pytest

from alpaca_lightning.selftrain.propagation import (
    PropagationTeacher,
    balanced_probabilities,
    knn_graph,
    spread_labels,
)


def _two_clusters(rng: np.random.Generator, sizes: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    centres = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    labels = np.repeat([0, 1], sizes)
    return centres[labels] + 0.15 * rng.standard_normal((len(labels), 3)), labels


def test_labels_spread_along_clusters() -> None:
    rng = np.random.default_rng(0)
    embeddings, gold = _two_clusters(rng, (40, 40))
    seeds = np.full(80, -1)
    seeds[[0, 1, 40, 41]] = gold[[0, 1, 40, 41]]  # two labelled points per cluster
    scores = spread_labels(knn_graph(embeddings, k=5), seeds, 2, alpha=0.99, iterations=50)
    probs = balanced_probabilities(scores, np.array([0.5, 0.5]))
    assert (probs.argmax(1) == gold).mean() == 1.0
    np.testing.assert_allclose(probs.sum(1), 1.0)


def test_graph_is_symmetric_and_keeps_k_neighbours() -> None:
    rng = np.random.default_rng(1)
    graph = knn_graph(rng.standard_normal((30, 8)), k=3)
    np.testing.assert_allclose(graph, graph.T)
    assert (np.diag(graph) == 0).all() and ((graph > 0).sum(1) >= 3).all()


def test_class_mass_follows_the_prior() -> None:
    # a dense class would take the ambiguous rows; balancing against the prior moves mass back
    scores = np.array([[3.0, 1.0], [3.0, 1.0], [2.0, 1.5], [0.5, 1.0]])
    even = balanced_probabilities(scores, np.array([0.5, 0.5]))
    assert even[:, 0].sum() == pytest.approx(even[:, 1].sum(), rel=0.3)
    assert even[2].argmax() == 1  # the ambiguous row moved to the thin class
    unreached = balanced_probabilities(np.zeros((2, 2)), np.array([0.5, 0.5]))
    np.testing.assert_allclose(unreached, 0.5)


def test_propagation_teacher_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="alpha"):
        PropagationTeacher(alpha=1.0)


def test_propagation_teacher_and_calibration_in_a_run(synthetic_task, tmp_path) -> None:
    """The propagation teacher predicts through the round's encoder once per teacher round, is fused by agreement
    with the classifier, and the fused confidences are temperature-scaled before the filters, ECE before and after
    recorded."""
    import json

    import pandas as pd

    from alpaca_lightning.pipeline import load_splits, run
    from alpaca_lightning.selftrain.calibration import fit_temperature, temper
    from tests.conftest import compose_config, tiny_overrides

    overrides = tiny_overrides(synthetic_task, tmp_path) + [
        "teachers=[classifier,propagation]", "fusion=agreement", "calibration=temperature",
        "selftrain.max_rounds=1",
    ]
    cfg = compose_config(overrides)
    run(cfg)
    splits = load_splits(cfg)
    record = json.loads((tmp_path / "rounds" / "round_1" / "metrics.json").read_text())
    teacher = tmp_path / "rounds" / "round_0" / "teacher_predictions"
    with np.load(teacher / "propagation" / "probs.npz") as saved:
        spread = {split: saved[split] for split in ("pool", "validation")}
    assert spread["pool"].shape == (200, 2) and spread["validation"].shape == (60, 2)
    np.testing.assert_allclose(spread["pool"].sum(1), 1.0, rtol=1e-6)
    assert record["teacher_propagation/pool_acc"] == pytest.approx(
        (spread["pool"].argmax(1) == splits.pool.labels).mean())
    # agreement: the mean of the two teachers, tempered by the temperature that fits validation best
    classifier = {split: np.load(teacher / split / "probs.npy") for split in ("pool", "validation")}
    mean = {split: (classifier[split] + spread[split]) / 2 for split in ("pool", "validation")}
    temperature = fit_temperature(mean["validation"], splits.validation.labels)
    assert record["calibration/temperature"] == pytest.approx(temperature)
    table = pd.read_csv(tmp_path / "rounds" / "round_1" / "pseudo_labels.csv")
    assert len(table) > 0
    np.testing.assert_allclose(table[["prob_neg", "prob_pos"]].to_numpy(),
                               temper(mean["pool"], temperature)[table["index"]], rtol=1e-4)
    agree = classifier["pool"].argmax(1) == spread["pool"].argmax(1)
    assert agree[table["index"]].all()  # only where the two teachers agree
    assert "teacher/val_ece_uncalibrated" in record and "teacher/val_ece" in record
    assert "before calibration" in (tmp_path / "report.md").read_text()
