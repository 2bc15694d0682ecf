"""A filter, a teacher, a loss and a round-0 stage added from outside the package: one class each (tests/toys.py)
and one YAML file each (tests/conf/<group>/toy.yaml), composed through Hydra's search path."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file

from alpaca_lightning.assets import REPO_ROOT
from alpaca_lightning.pipeline import run
from tests.conftest import compose_config, tiny_overrides
from tests.toys import PoolEntropy

TOY_CONF = REPO_ROOT / "tests" / "conf"


@pytest.fixture(scope="module")
def toy_run(synthetic_task, tmp_path_factory):
    out = tmp_path_factory.mktemp("toy_run")
    overrides = [o for o in tiny_overrides(synthetic_task, out) if "class_balanced" not in o] + [
        f"hydra.searchpath=[file://{TOY_CONF}]",
        "stages=[toy]", "losses=[supervised,toy]", "teachers=[classifier,toy]", "filters=[toy]",
        "selftrain.max_rounds=1",
    ]
    PoolEntropy.batches_seen = 0
    logger = logging.getLogger("alpaca_lightning")
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        results = run(compose_config(overrides))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return out, results, records


def test_toy_stage_runs_before_round_0_and_hands_over_its_encoder(toy_run) -> None:
    out, _, log = toy_run
    stage = out / "stages" / "0_zero_row"
    assert (stage / "COMPLETE").is_file()
    weights = load_file(str(stage / "model.safetensors"))
    embeddings = next(v for k, v in weights.items() if k.endswith("word_embeddings.weight"))
    assert float(embeddings[5].abs().sum()) == 0.0
    assert any("round 0: training" in line and str(stage) in line for line in log)


def test_toy_loss_reads_the_pool_stream_in_every_round(toy_run) -> None:
    out, _, _ = toy_run
    assert PoolEntropy.batches_seen > 0
    for k in (0, 1):
        logged = pd.read_csv(out / "logs" / f"round_{k}" / "metrics.csv")
        assert "train/pool_entropy" in logged.columns and logged["train/pool_entropy"].notna().any()


def test_toy_teacher_is_fused_and_toy_filter_selects(toy_run) -> None:
    out, _, _ = toy_run
    record = json.loads((out / "rounds" / "round_1" / "metrics.json").read_text())
    assert "teacher_constant/val_acc" in record and "teacher_classifier/val_acc" in record
    table = pd.read_csv(out / "rounds" / "round_1" / "pseudo_labels.csv")
    assert len(table) > 0 and (table["index"] % 2 == 0).all()  # the toy filter: even positions only
    classifier = np.load(out / "rounds" / "round_0" / "teacher_predictions" / "pool" / "probs.npy")
    constant = np.tile([0.01, 0.99], (len(classifier), 1))
    fused = (classifier + constant) / 2  # fusion=mean of the two teachers
    np.testing.assert_allclose(table[["prob_neg", "prob_pos"]].to_numpy(), fused[table["index"]], rtol=1e-4)
