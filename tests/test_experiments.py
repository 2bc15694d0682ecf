"""Named experiments (conf/experiment/) run end to end on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alpaca_lightning.pipeline import run
from tests.conftest import compose_config, tiny_overrides


def test_an_ablation_experiment_runs(synthetic_task, tmp_path) -> None:
    tiny = [o for o in tiny_overrides(synthetic_task, tmp_path) if not o.startswith("teachers=")]  # the experiment's
    cfg = compose_config(["experiment=ablation/fused_teachers", *tiny])
    assert list(cfg.teachers) == ["classifier", "propagation"]
    results = run(cfg)
    assert results["rounds_run"] == 3
    record = json.loads((tmp_path / "rounds" / "round_1" / "metrics.json").read_text())
    assert "teacher_propagation/pool_acc" in record


def test_a_benchmark_cell_runs(tmp_path) -> None:
    if not Path(compose_config([]).paths.data_dir).is_dir():
        pytest.skip("../shared/data is absent")
    cfg = compose_config([
        "experiment=benchmark/trec6_k8", "model=tiny_bert", "split.pool_size=60", "split.test_size=50",
        "stages=[]", "selftrain.max_rounds=1", "selftrain.supervised_epochs=2", "filters=[class_balanced]",
        "filters.class_balanced.k=5", "hardware.precision=32-true", "trainer.enable_progress_bar=false",
        f"paths.output_dir={tmp_path}",
    ])
    results = run(cfg)
    assert results["splits"] == {"labelled": 48, "pool": 60, "validation": 48, "test": 50}
