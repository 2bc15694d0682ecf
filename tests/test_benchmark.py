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
