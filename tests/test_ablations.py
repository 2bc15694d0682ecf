"""The ablation script's code path (experiments/ablations.py --smoke, and experiments/round_selection.py on its
output) on the tiny model, on the fixture datasets and, where present, on ../shared/data."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from experiments.ablations import SMOKE, ablations
from experiments.round_selection import runs_of, score


def test_ablations_smoke_plan(data_root, tmp_path) -> None:
    report = ablations(tmp_path, replace(SMOKE, k=data_root.k))
    assert report["failures"] == []
    assert [(r["dataset"], r["variant"]) for r in report["rows"]] == [
        ("trec6", "filter=class_balanced"),
        ("trec6", "filter=curriculum"),
    ]
    for row in report["rows"]:  # each row: its one seed's run, as that run wrote it
        folder = tmp_path / "runs" / f"trec6_{row['variant'].replace('=', '-')}_s0"
        results = json.loads((folder / "results.json").read_text())
        rounds = json.loads((folder / "rounds.json").read_text())
        assert len(row["rounds"][0]) == len(rounds) == 2  # round 0 and one pseudo-label round
        assert row["test/acc"] == [results["best"]["test/acc"]] and row["round0_test/acc"] == [rounds[0]["test/acc"]]
        assert results["splits"]["labelled"] == 6 * data_root.k
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["rows"][1]["test/acc"] == report["rows"][1]["test/acc"] and saved["jobs"] == 1
    table = (tmp_path / "results.md").read_text()
    assert "| trec6 | filter=class_balanced |" in table and "| trec6 | filter=curriculum |" in table
    assert (tmp_path / "ablations.png").stat().st_size > 1000
    # round_selection.py reads the ablation's rows: one run per variant, the last round of each
    rules = score(runs_of([tmp_path / "results.json"]))
    last = [row["rounds"][0][-1]["test/acc"] for row in report["rows"]]
    assert rules["last round"]["runs"] == 2 and rules["last round"]["per_cell"]["trec6"] == pytest.approx(sum(last) / 2)


def test_changes_are_read_against_the_reference_variant_on_each_dataset() -> None:
    from experiments.ablations import against_reference

    def row(dataset: str, variant: str, r0_val: float, r0_test: float, val: float, test: float, f1: float) -> dict:
        return {"dataset": dataset, "variant": variant, "round0_val/acc": [r0_val], "round0_test/acc": [r0_test],
                "best_val/acc": [val], "test/acc": [test], "test/f1_macro": [f1], "failed": {}}

    rows = [
        row("sst2", "default", 0.50, 0.60, 0.55, 0.62, 0.60), row("sst2", "llrd", 0.52, 0.59, 0.60, 0.64, 0.63),
        row("trec6", "default", 0.80, 0.85, 0.82, 0.86, 0.80), row("trec6", "llrd", 0.80, 0.86, 0.78, 0.87, 0.85),
    ]
    lines = against_reference(rows)
    assert lines[-1] == (
        "| llrd | +2.0 / -1.0 → +5.0 / +2.0, F1 +3.0 | +0.0 / +1.0 → -4.0 / +1.0, F1 +5.0 "
        "| +1.0 / +0.0 → +0.5 / +1.5, F1 +4.0 | +0.5 ± 4.5 (2) |"
    )
    assert not any(line.startswith("| default") for line in lines)
    assert against_reference([r for r in rows if r["variant"] == "llrd"]) == []  # no reference: no table
    for r in rows:  # rows of an older results.json, without macro-F1: a dash, not "nan"
        del r["test/f1_macro"]
    assert against_reference(rows)[-1].startswith("| llrd | +2.0 / -1.0 → +5.0 / +2.0, F1 - |")
