"""Named experiments (conf/experiment/) run end to end on the tiny model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from alpaca_lightning.pipeline import run
from tests.conftest import compose_config, tiny_overrides


@pytest.mark.slow
def test_an_ablation_experiment_runs(synthetic_task, tmp_path) -> None:
    """ablation/fused_teachers: the classifier and label spreading teach, and a pool example is pseudo-labelled
    only where the two agree."""
    tiny = [o for o in tiny_overrides(synthetic_task, tmp_path) if not o.startswith("teachers=")]  # the experiment's
    cfg = compose_config(["experiment=ablation/fused_teachers", *tiny])
    assert list(cfg.teachers) == ["classifier", "propagation"]
    results = run(cfg)
    assert results["rounds_run"] == 3
    for k in (1, 2):
        teacher = tmp_path / "rounds" / f"round_{k - 1}" / "teacher_predictions"
        classifier = np.load(teacher / "pool" / "probs.npy").argmax(1)
        with np.load(teacher / "propagation" / "probs.npz") as saved:
            spread = saved["pool"].argmax(1)
        table = pd.read_csv(tmp_path / "rounds" / f"round_{k}" / "pseudo_labels.csv")
        assert len(table) > 0
        assert (classifier[table["index"]] == table["label"]).all() and (spread[table["index"]] == table["label"]).all()


# per data root: the labels per class, and the splits that a benchmark cell of TREC-6 capped at a pool of 60 and a
# test set of 50 gets (the fixture's 12 rows per class leave a pool of 48; its test file has 18 rows)
CELL = {"fixture": {"labelled": 12, "pool": 48, "validation": 12, "test": 18},
        "shared": {"labelled": 48, "pool": 60, "validation": 48, "test": 50}}


def test_a_benchmark_cell_runs(data_root, tmp_path) -> None:
    k = data_root.k
    cfg = compose_config([
        "experiment=benchmark/trec6_k8", "model=tiny_bert", f"split.labels_per_class={k}", f"split.val_per_class={k}",
        "split.pool_size=60", "split.test_size=50", "stages=[]", "selftrain.max_rounds=1",
        "selftrain.supervised_epochs=2", "selftrain.min_precision=null", "filters=[class_balanced]",
        "filters.class_balanced.k=5",
        "hardware.precision=32-true", "trainer.enable_progress_bar=false", f"paths.output_dir={tmp_path}",
    ])
    assert cfg.paths.data_dir == str(data_root.path)
    results = run(cfg)
    assert results["splits"] == CELL[data_root.name]
    assert results["rounds_run"] == 2 and results["task"] == "trec6"
    count = json.loads((tmp_path / "rounds" / "round_1" / "metrics.json").read_text())["pseudo/count"]
    labels = pd.read_csv(tmp_path / "rounds" / "round_1" / "pseudo_labels.csv")["label"]
    assert count == len(labels) > 0 and labels.value_counts().max() <= 5  # the top 5 of each predicted class
