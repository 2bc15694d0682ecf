"""The benchmark's code path (experiments/benchmark.py) on the tiny model; needs ../shared/data, else skipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.benchmark import benchmark
from tests.conftest import compose_config


def test_benchmark_smoke_variant(tmp_path) -> None:
    if not Path(compose_config([]).paths.data_dir).is_dir():
        pytest.skip("../shared/data is absent")
    report = benchmark("smoke", tmp_path, extra=["model=tiny_bert"])
    cell = report["cells"][0]
    assert cell["dataset"] == "trec6" and cell["K"] == 8
    assert len(cell["selftrain"]["rounds"][0]) == 2
    assert cell["full"]["labelled"] == 200
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["cells"][0]["supervised"] == cell["supervised"]
    table = (tmp_path / "results.md").read_text()
    assert "| trec6 | 8 | self-training |" in table and "full supervision" in table
    assert (tmp_path / "test_acc_per_round.png").stat().st_size > 1000
    # the peers ran on the same splits: 8 labels per class of TREC-6's 6 classes, scored on the same test subset
    peers = json.loads((tmp_path / "runs" / "trec6_K8_peers_s0" / "results.json").read_text())
    assert peers["labelled"] == 48 and not (tmp_path / "runs" / "trec6_K8_peers_s0" / "scratch").exists()
    for name in ("logistic_regression", "setfit"):
        assert len(cell[name]["test/acc"]) == 1 and 0.0 <= cell[name]["test/acc"][0] <= 1.0
    assert "| trec6 | 8 | SetFit |" in table and "gap closed" in table
    summary = report["summary"]["trec6 K=8"]
    assert summary["gain"] == pytest.approx(summary["selftrain"] - summary["supervised"])


def test_benchmark_reports_the_self_training_candidate_best_on_validation(tmp_path, monkeypatch) -> None:
    if not Path(compose_config([]).paths.data_dir).is_dir():
        pytest.skip("../shared/data is absent")
    from dataclasses import replace

    from experiments import benchmark as module

    candidates = {"default": [], "student_init=continue": ["selftrain.student_init=continue"]}
    monkeypatch.setitem(module.VARIANTS, "smoke", replace(module.VARIANTS["smoke"], candidates=candidates))
    report = benchmark("smoke", tmp_path, extra=["model=tiny_bert"])
    scores = {c["candidate"]: c for c in report["candidates"]}
    assert set(scores) == set(candidates)
    assert report["selftrain_candidate"] == max(scores, key=lambda name: scores[name]["val/acc"])
    chosen = json.loads(
        (tmp_path / "runs" / ("trec6_K8_selftrain_s0" if report["selftrain_candidate"] == "default"
                              else "trec6_K8_selftrain-student_init-continue_s0") / "results.json").read_text()
    )
    assert report["cells"][0]["selftrain"]["test/acc"] == [chosen["best"]["test/acc"]]
    assert "Self-training settings tried" in (tmp_path / "results.md").read_text()
