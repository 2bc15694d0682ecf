"""The ablation script's code path (experiments/ablations.py --smoke) on the tiny model; needs ../shared/data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.ablations import SMOKE, ablations
from tests.conftest import compose_config


def test_ablations_smoke_plan(tmp_path) -> None:
    if not Path(compose_config([]).paths.data_dir).is_dir():
        pytest.skip("../shared/data is absent")
    report = ablations(tmp_path, SMOKE)
    assert report["failures"] == []
    assert [(r["dataset"], r["variant"]) for r in report["rows"]] == [
        ("trec6", "filter=class_balanced"),
        ("trec6", "filter=curriculum"),
    ]
    default = report["rows"][0]
    assert len(default["test/acc"]) == 1 and len(default["rounds"][0]) == 2  # round 0 and one pseudo-label round
    assert len(default["round0_test/acc"]) == 1
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["rows"][1]["test/acc"] == report["rows"][1]["test/acc"] and saved["jobs"] == 1
    table = (tmp_path / "results.md").read_text()
    assert "| trec6 | filter=class_balanced |" in table and "| trec6 | filter=curriculum |" in table
    assert (tmp_path / "ablations.png").stat().st_size > 1000
