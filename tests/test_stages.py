"""The SetFit-style round-0 stages on the tiny model: contrastive pairs pull same-class texts together, and the
probe gives round 0 a fitted head."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from alpaca_lightning.errors import AlpacaError
from alpaca_lightning.models.backbone import load_tokenizer
from alpaca_lightning.models.classifier import SequenceClassifier
from alpaca_lightning.pipeline import load_splits, run
from alpaca_lightning.stages.contrastive import LinearProbeStage, pooled_embeddings, sentence_pairs
from tests.conftest import compose_config, tiny_overrides


def test_sentence_pairs_are_setfit_pairs() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2])
    pairs = sentence_pairs(labels, iterations=3, seed=0)
    assert len(pairs) == 2 * 3 * len(labels)
    for a, b, target in pairs:
        assert a != b and (labels[a] == labels[b]) == (target == 1.0)


def _class_gap(encoder_path, splits, tokenizer) -> float:
    """Mean cosine similarity of same-class pairs minus that of different-class pairs, labelled set."""
    ids = tokenizer(list(splits.labelled.texts), truncation=True, max_length=64)["input_ids"]
    embeddings = torch.nn.functional.normalize(
        pooled_embeddings(SequenceClassifier(str(encoder_path), 2, torch.optim.AdamW), ids, tokenizer.pad_token_id),
        dim=1,
    )
    similarity = (embeddings @ embeddings.T).numpy()
    same = splits.labelled.labels[:, None] == splits.labelled.labels[None, :]
    off_diagonal = ~np.eye(len(same), dtype=bool)
    return float(similarity[same & off_diagonal].mean() - similarity[~same].mean())


def test_contrastive_then_probe_stages(synthetic_task, tmp_path) -> None:
    overrides = tiny_overrides(synthetic_task, tmp_path) + [
        "stages=[contrastive,probe]", "stages.contrastive.pair_iterations=10",
        "stages.contrastive.module.optimizer.lr=3e-3", "selftrain.max_rounds=0",
    ]
    cfg = compose_config(overrides)
    run(cfg)
    splits = load_splits(cfg)
    tokenizer = load_tokenizer(str(tmp_path / "backbone"))
    contrastive, probe = tmp_path / "stages" / "0_contrastive", tmp_path / "stages" / "1_probe"
    before = _class_gap(tmp_path / "backbone", splits, tokenizer)
    after = _class_gap(contrastive, splits, tokenizer)
    assert after > before + 0.1, (before, after)
    # the probe's head, loaded by a classifier built from the probe folder, already separates the labelled set
    classifier = SequenceClassifier(str(probe), num_labels=2, optimizer=torch.optim.AdamW).eval()
    encoded = tokenizer(list(splits.labelled.texts), padding=True, return_tensors="pt")
    with torch.no_grad():
        predicted = classifier(dict(encoded)).argmax(1).numpy()
    assert (predicted == splits.labelled.labels).mean() >= 0.9
    assert json.loads((probe / "classifier_head.json").read_text())["num_labels"] == 2


def test_student_init_stages_reruns_the_stages_with_pseudo_labels(synthetic_task, tmp_path) -> None:
    """Each student re-runs the round-0 stages from the backbone on labelled + the most confident pseudo-labels; the
    stage folders of a finished round are removed, and a resumed run reuses the finished rounds."""
    overrides = tiny_overrides(synthetic_task, tmp_path) + [
        "stages=[contrastive,probe]", "stages.contrastive.pair_iterations=2", "selftrain.max_rounds=1",
        "student_init=stages", "student_init.pseudo_per_class=5",
    ]
    results = run(compose_config(overrides))
    log = (tmp_path / "rounds" / "round_1" / "metrics.json").read_text()
    assert json.loads(log)["round"] == 1 and results["best_round"] in (0, 1)
    assert not (tmp_path / "stages" / "round_1").exists()  # the student's stage encoders went with the round
    assert (tmp_path / "stages" / "1_probe").is_dir()  # round 0's stages stay (a resume reuses them)
    seen = []
    original = SequenceClassifier.__init__

    def recording_init(self, model_path, *args, **kwargs):
        seen.append(model_path)
        original(self, model_path, *args, **kwargs)

    # the student of a fresh round 1 is built from its own stages' probe folder, not from the teacher
    import shutil

    shutil.rmtree(tmp_path / "rounds" / "round_1")
    (tmp_path / "results.json").unlink()  # a run cut in round 1 has no results.json yet
    SequenceClassifier.__init__ = recording_init
    try:
        run(compose_config(overrides))
    finally:
        SequenceClassifier.__init__ = original
    assert any(str(tmp_path / "stages" / "round_1" / "1_probe") == str(p) for p in seen), seen


def test_student_init_stages_needs_stages(synthetic_task, tmp_path) -> None:
    import pytest

    from alpaca_lightning.errors import AlpacaError

    overrides = tiny_overrides(synthetic_task, tmp_path) + ["student_init=stages"]
    with pytest.raises(AlpacaError, match="stages=\\[\\] is empty"):
        run(compose_config(overrides))


def test_a_probe_finetune_lr_that_is_not_positive_is_refused() -> None:
    with pytest.raises(AlpacaError, match="stages.probe.finetune_lr must be > 0"):
        LinearProbeStage(finetune_lr=0.0)
