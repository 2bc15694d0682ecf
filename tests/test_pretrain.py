"""The self-supervised stages lower their loss on the tiny model and hand their encoder to the classifier."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from alpaca_lightning.data.pretraining import IS_NEXT, IS_RANDOM, build_nsp_pairs, split_segments
from alpaca_lightning.models.classifier import SequenceClassifier
from alpaca_lightning.pipeline import run
from tests.conftest import compose_config, tiny_overrides


def test_nsp_pairs_come_from_consecutive_segments_with_random_negatives() -> None:
    texts = [f"first idea {i}. second idea {i}! third idea {i}?" for i in range(50)]
    pairs = build_nsp_pairs(texts, seed=0)
    assert len(pairs) == 100
    for a, b, label in pairs:
        same_text = a.split()[-1].strip(".!?") == b.split()[-1].strip(".!?")
        assert same_text == (label == IS_NEXT)
    share = sum(label == IS_RANDOM for *_, label in pairs) / len(pairs)
    assert 0.3 < share < 0.7
    assert split_segments("one two three four five six") == ["one two three", "four five six"]


@pytest.mark.parametrize("stage", ["mlm", "mlm_nsp"])
def test_pretraining_lowers_loss_and_hands_over_the_encoder(stage, synthetic_task, tmp_path) -> None:
    overrides = tiny_overrides(synthetic_task, tmp_path) + [
        f"stages=[{stage}]", f"stages.{stage}.max_epochs=3", f"stages.{stage}.module.optimizer.lr=3e-3",
        f"stages.{stage}.data.batch_size=16", f"stages.{stage}.data.mlm_probability=0.3", "selftrain.max_rounds=0",
    ]
    run(compose_config(overrides))
    encoder = tmp_path / "stages" / f"0_{stage}"
    metrics = json.loads((encoder / "stage_metrics.json").read_text())
    assert metrics["loss_after"] < 0.9 * metrics["loss_before"], metrics
    pretrained = load_file(str(encoder / "model.safetensors"))
    original = load_file(str(tmp_path / "backbone" / "model.safetensors"))
    key = "bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(pretrained[key], original[key])  # the stage changed the encoder ...
    classifier = SequenceClassifier(str(encoder), num_labels=2, optimizer=torch.optim.AdamW)
    loaded = classifier.model.state_dict()["encoder.layer.0.attention.self.query.weight"]
    assert torch.equal(loaded, pretrained[key])  # ... and the classifier starts from the changed encoder
    record = json.loads((tmp_path / "rounds" / "round_0" / "metrics.json").read_text())
    assert record["train_size"] == 32
    config = (tmp_path / "config_resolved.yaml").read_text()
    assert f"next_sentence: {str(stage == 'mlm_nsp').lower()}" in config
