"""The task-kind seam: a second kind runs the whole round loop, selected by ``task.kind`` alone."""

from __future__ import annotations

import json

import pandas as pd

from alpaca_lightning import pipeline
from tests.conftest import compose_config, tiny_overrides
from tests.first_token import FirstTokenTagging


def test_a_second_task_kind_runs_every_round_through_its_own_model_and_metrics(synthetic_task, tmp_path) -> None:
    FirstTokenTagging.built.clear()
    cfg = compose_config(tiny_overrides(synthetic_task, tmp_path) + [
        "task.kind._target_=tests.first_token.FirstTokenTagging", "selftrain.max_rounds=2",
    ])
    results = pipeline.run(cfg)
    rounds = json.loads((tmp_path / "rounds.json").read_text())
    assert [r["round"] for r in rounds] == [0, 1, 2] and results["rounds_run"] == 3
    # every metric is the kind's own: its first-token accuracy, and no macro-F1 (the sentence kind's)
    for record in rounds:
        assert record["val/first_token_acc"] == record["val/acc"] and "val/f1_macro" not in record
    assert rounds[1]["teacher_classifier/val_first_token_acc"] is not None
    # each round's model and its teacher's predictions came from the kind's classifier: round 0, the teacher of
    # round 1 (pool, validation), round 1, the teacher of round 2, round 2
    assert FirstTokenTagging.built == ["FirstTokenClassifier"] * 7
    selected = pd.read_csv(tmp_path / "rounds" / "round_1" / "pseudo_labels.csv")
    assert len(selected) == rounds[1]["pseudo/count"] > 0
