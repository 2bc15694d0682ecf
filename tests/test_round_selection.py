"""experiments/round_selection.py: rules scored on run folders and on benchmark results alike."""

from __future__ import annotations

import json

import pytest

from experiments.round_selection import runs_of, score


def _rounds(tests: list[float], vals: list[float]) -> list[dict]:
    return [{"round": r, "test/acc": t, "val/acc": v, "val/nll": 1.0 - v} for r, (t, v) in enumerate(zip(tests, vals))]


def test_rules_are_scored_on_run_folders_and_benchmark_cells(tmp_path) -> None:
    run = tmp_path / "sst2_sim_s0"
    run.mkdir()
    (run / "rounds.json").write_text(json.dumps(_rounds([0.6, 0.7, 0.8], [0.5, 0.6, 0.6])))
    bench = tmp_path / "results.json"
    bench.write_text(json.dumps({"cells": [{"dataset": "agnews", "K": 8, "selftrain": {
        "rounds": [_rounds([0.8, 0.75], [0.7, 0.8])]}}]}))
    ablation = tmp_path / "ablation.json"  # ablations.py: a row per dataset and variant, its seeds' rounds
    ablation.write_text(json.dumps({"rows": [{"dataset": "trec6", "variant": "default", "rounds": [
        _rounds([0.5, 0.6], [0.5, 0.5]), _rounds([0.4, 0.3], [0.6, 0.5])]}]}))
    runs = runs_of([run, bench])
    assert [name for name, _ in runs] == ["sst2_sim", "agnews K=8"]
    ablation_runs = runs_of([ablation])
    assert [name for name, _ in ablation_runs] == ["trec6", "trec6"]
    assert score(ablation_runs)["last round"]["per_cell"]["trec6"] == pytest.approx((0.6 + 0.3) / 2)
    table = score(runs)
    earliest, latest = table["val/acc (ties: earliest)"], table["val/acc (ties: latest)"]
    assert earliest["per_cell"]["sst2_sim"] == pytest.approx(0.7)  # the tie at 0.6 goes to round 1
    assert latest["per_cell"]["sst2_sim"] == pytest.approx(0.8)
    assert earliest["regret"] == pytest.approx((0.1 + 0.05) / 2)  # agnews: round 1 chosen, round 0 best
    assert table["round 0"]["gain"] == 0.0
