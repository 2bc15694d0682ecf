"""Pseudo-label and calibration diagnostics give the hand-computed numbers; the figures and report.md get written."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import multiclass_calibration_error

from alpaca_lightning.selftrain.diagnostics import (
    confusion_matrix,
    expected_calibration_error,
    per_class_precision,
    reliability_bins,
    round_diagnostics,
)
from alpaca_lightning.selftrain.plots import plot_class_counts, plot_confusion, plot_reliability, plot_rounds
from alpaca_lightning.selftrain.run_report import write_round_plots, write_run_plot, write_run_report
from tests.conftest import probs_for

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"



# --- calibration -------------------------------------------------------------------------------------------------


def test_ece_of_calibrated_predictions_is_zero() -> None:
    # confidence 0.75 right 3 times in 4, confidence 0.95 right 19 times in 20: each bin's accuracy = its confidence
    probs = probs_for([0] * 24, [0.75] * 4 + [0.95] * 20)
    gold = np.array([0, 0, 0, 1] + [0] * 19 + [2])
    assert expected_calibration_error(probs, gold) == pytest.approx(0.0, abs=1e-9)


def test_ece_of_overconfident_wrong_predictor_is_its_confidence() -> None:
    probs = probs_for([0] * 5, [0.99] * 5)
    assert expected_calibration_error(probs, np.ones(5, dtype=int)) == pytest.approx(0.99)


def test_ece_by_hand_ignores_unknown_gold() -> None:
    probs = probs_for([0, 0, 1, 2], [0.95, 0.95, 0.65, 0.65])
    gold = np.array([0, 1, 1, -1])  # the last row has no gold label: left out
    # bin [0.9, 1.0): 2 rows, confidence 0.95, accuracy 0.5 -> gap 0.45
    # bin [0.6, 0.7): 1 row,  confidence 0.65, accuracy 1.0 -> gap 0.35
    expected = 2 / 3 * 0.45 + 1 / 3 * 0.35
    assert expected_calibration_error(probs, gold) == pytest.approx(expected)


def test_ece_matches_torchmetrics() -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4) * 0.5, size=500)
    gold = rng.integers(0, 4, size=500)
    reference = multiclass_calibration_error(
        torch.from_numpy(probs).float(), torch.from_numpy(gold), num_classes=4, n_bins=10
    )
    assert expected_calibration_error(probs, gold, bins=10) == pytest.approx(float(reference), abs=1e-5)


def test_ece_is_nan_without_known_gold() -> None:
    assert math.isnan(expected_calibration_error(probs_for([0, 1], [0.9, 0.8]), np.array([-1, -1])))


def test_reliability_bins_counts_means_and_empty_bins() -> None:
    probs = probs_for([0, 0, 1, 1, 2], [0.95, 0.91, 0.65, 1.0, 0.5])
    gold = np.array([0, 1, 1, 1, -1])
    bins = reliability_bins(probs, gold, bins=10)
    assert len(bins) == 10
    assert [b["count"] for b in bins] == [0, 0, 0, 0, 0, 0, 1, 0, 0, 3]  # 1.0 joins the last bin; -1 is left out
    assert bins[9]["lower"] == pytest.approx(0.9) and bins[9]["upper"] == pytest.approx(1.0)
    assert bins[9]["confidence"] == pytest.approx((0.95 + 0.91 + 1.0) / 3)
    assert bins[9]["accuracy"] == pytest.approx(2 / 3)  # the row at 0.91 is wrong
    assert bins[6]["confidence"] == pytest.approx(0.65) and bins[6]["accuracy"] == pytest.approx(1.0)
    assert math.isnan(bins[0]["confidence"]) and math.isnan(bins[0]["accuracy"])


# --- pseudo-labels vs hidden gold ------------------------------------------------------------------------------------

LABELS = np.array([0, 0, 1, 2, 2, 1, 0])
GOLD = np.array([0, 1, 1, 2, -1, 0, 0])  # row 4 has no gold label


def test_confusion_matrix_rows_gold_columns_label() -> None:
    matrix = confusion_matrix(LABELS, GOLD, num_classes=3)
    assert matrix.tolist() == [[2, 1, 0], [1, 1, 0], [0, 0, 1]]
    assert matrix.sum() == 6  # the unknown-gold row is not counted


def test_confusion_matrix_without_known_gold_is_zero() -> None:
    assert confusion_matrix(np.array([0, 1]), np.array([-1, -1]), num_classes=2).tolist() == [[0, 0], [0, 0]]


def test_per_class_precision_by_hand() -> None:
    precision = per_class_precision(LABELS, GOLD, ["neg", "pos", "neutral"])
    assert precision == {
        "pseudo/precision_neg": pytest.approx(2 / 3),  # rows 0, 1, 6 labelled neg; gold neg for 0 and 6
        "pseudo/precision_pos": pytest.approx(1 / 2),  # rows 2, 5; gold pos for 2
        "pseudo/precision_neutral": pytest.approx(1.0),  # row 3 (row 4's gold is unknown)
    }


def test_per_class_precision_nan_when_class_never_labelled_or_gold_unknown() -> None:
    precision = per_class_precision(np.array([0, 0]), np.array([0, 1]), ["a", "b"])
    assert precision["pseudo/precision_a"] == pytest.approx(0.5)
    assert math.isnan(precision["pseudo/precision_b"])
    unknown = per_class_precision(np.array([0, 1]), np.array([-1, -1]), ["a", "b"])
    assert all(math.isnan(v) for v in unknown.values())


def test_round_diagnostics_keys_and_values() -> None:
    names = ["neg", "pos", "neutral"]
    without_val = round_diagnostics(LABELS, GOLD, None, None, names)
    assert sorted(without_val) == sorted(f"pseudo/precision_{n}" for n in names)

    val_probs = probs_for([0, 0, 1, 2], [0.95, 0.95, 0.65, 0.65])
    val_gold = np.array([0, 1, 1, -1])
    with_val = round_diagnostics(LABELS, GOLD, val_probs, val_gold, names)
    # by hand, as in test_ece_by_hand_ignores_unknown_gold: bins 0.95 (2 rows, accuracy 0.5), 0.65 (1 row, right)
    assert with_val["teacher/val_ece"] == pytest.approx(2 / 3 * 0.45 + 1 / 3 * 0.35)
    assert sorted(with_val) == sorted([*without_val, "teacher/val_ece"])  # accuracy comes from classification_metrics
    assert with_val["pseudo/precision_pos"] == pytest.approx(0.5)


# --- figures and report.md -------------------------------------------------------------------------------------------


def assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_MAGIC


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_plot_functions_write_pngs(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    probs = probs_for([0, 0, 1, 2], [0.95, 0.95, 0.65, 0.65])
    gold = np.array([0, 1, 1, 2])
    paths = [
        plot_confusion(confusion_matrix(LABELS, GOLD, 3), ["neg", "pos", "neutral"], tmp_path / "c.png", "confusion"),
        plot_reliability(
            reliability_bins(probs, gold), expected_calibration_error(probs, gold), tmp_path / "r.png", "r"
        ),
        plot_reliability(reliability_bins(probs, -np.ones(4, int)), float("nan"), tmp_path / "empty.png", "no gold"),
        plot_class_counts({"neg": 5, "pos": 3}, {"neg": 0.5, "pos": 0.5}, tmp_path / "sub" / "counts.png", "counts"),
        plot_class_counts({"neg": 0, "pos": 0}, None, tmp_path / "zero.png", "nothing selected"),
        plot_rounds([{"round": 0, "val/acc": 0.7, "best": True}], tmp_path / "one_round.png"),
    ]
    for path in paths:
        assert_png(path)
    assert no_temp_files(tmp_path)
    assert plt.get_fignums() == []  # every figure was closed


def fake_records() -> list[dict]:
    return [
        {"round": 0, "train_size": 40, "val/acc": 0.70, "test/acc": 0.68, "test/f1_macro": 0.66, "best": False},
        {
            "round": 1,
            "train_size": 140,
            "pseudo/count": 100,
            "pseudo/acc": 0.85,
            "teacher/val_ece": 0.123,
            "val/acc": 0.76,
            "test/acc": 0.74,
            "test/f1_macro": 0.73,
            "pseudo/precision_neg": 0.9,
            "pseudo/precision_pos": 0.8,
            "best": True,
        },
        {"round": 2, "train_size": 190, "pseudo/count": 150, "val/acc": 0.75, "best": False},  # no test, no gold
    ]


def test_round_plots_run_plot_and_report(tmp_path: Path) -> None:
    names = ["neg", "pos"]
    rng = np.random.default_rng(1)
    val_probs = rng.dirichlet([1.0, 1.0], size=50)
    val_gold = rng.integers(0, 2, size=50)
    pseudo = rng.integers(0, 2, size=100)
    round_1 = tmp_path / "rounds" / "round_1"
    written = write_round_plots(round_1, names, pseudo, pseudo.copy(), val_probs, val_gold, {"neg": 0.4, "pos": 0.6}, 1)
    assert sorted(p.name for p in written) == ["class_counts.png", "confusion.png", "reliability.png"]
    # round 2: hidden gold unknown and no validation data -> only the class counts
    round_2 = tmp_path / "rounds" / "round_2"
    written = write_round_plots(round_2, names, pseudo[:50], -np.ones(50, int), None, None, None, 2)
    assert [p.name for p in written] == ["class_counts.png"]
    for path in [*round_1.iterdir(), *round_2.iterdir()]:
        assert_png(path)

    records = fake_records()
    assert_png(write_run_plot(tmp_path, records))
    results = {"task": "toy_sentiment", "seed": 3, "best_round": 1, "stop_reason": "reached selftrain.max_rounds=2"}
    report = write_run_report(tmp_path, records, results, names)
    assert report == tmp_path / "report.md"
    text = report.read_text()
    assert text.startswith("# Self-training report: toy_sentiment, seed 3")
    assert "reached selftrain.max_rounds=2" in text
    for link in [
        "(rounds.png)",
        "(rounds/round_1/confusion.png)",
        "(rounds/round_1/reliability.png)",
        "(rounds/round_1/class_counts.png)",
        "(rounds/round_2/class_counts.png)",
    ]:
        assert link in text
    assert "round_2/confusion.png" not in text and "round_2/reliability.png" not in text
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert rows["0"].replace(" ", "") == "|0|40|-|-|-|70.0|68.0|66.0|"  # round 0: no pseudo-label columns
    assert rows["1 (reported)"].replace(" ", "") == "|1(reported)|140|100|85.0|12.3|76.0|74.0|73.0|"
    assert "| 1 | 90.0 | 80.0 |" in text  # per-class precision table
    assert no_temp_files(tmp_path)


def test_report_without_results_keys_or_figures(tmp_path: Path) -> None:
    text = write_run_report(tmp_path, fake_records()[:1], {}, ["neg", "pos"]).read_text()
    assert text.startswith("# Self-training report\n")
    assert "reported round" not in text and ".png" not in text and "precision" not in text


@pytest.mark.parametrize(("rule", "words"), [("last", "schedule=last"), ("guarded", "schedule=guarded"),
                                             ("monitor", "the best val/acc")])
def test_the_report_names_the_schedule_rule_that_chose_the_reported_round(rule, words) -> None:
    from alpaca_lightning.selftrain.run_report import chosen_by

    assert words in chosen_by({"select_round": rule, "monitor": "val/acc"})
