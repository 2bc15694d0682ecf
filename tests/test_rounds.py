"""Contracts of the round loop: validation-only choice, defaults in one place, hidden pool labels, seeded
teachers, the teacher chain, and the consistency loss."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from alpaca_lightning import pipeline
from alpaca_lightning.assets import REPO_ROOT
from alpaca_lightning.errors import AlpacaError
from alpaca_lightning.models.losses import Consistency, Supervised, token_cutoff
from alpaca_lightning.selftrain.rounds import RoundSettings
from tests.conftest import compose_config, tiny_overrides

PROMPT = (
    "task.prompt={pattern:'{text} it was {mask}.',verbalizers:[awful,great],"
    "label_sentences:['it was awful.','it was great.']}"
)
SHORT = ["selftrain.max_rounds=1", "selftrain.supervised_epochs=4", "selftrain.student_epochs=1"]


def test_monitor_must_be_a_validation_metric(synthetic_task, tmp_path) -> None:
    cfg = compose_config(tiny_overrides(synthetic_task, tmp_path) + ["selftrain.monitor=test/acc"])
    with pytest.raises(AlpacaError, match="validation only"):
        pipeline.run(cfg)
    assert not (tmp_path / "rounds").exists()  # refused before any training


def test_round_settings_take_every_default_from_the_yaml() -> None:
    for field in dataclasses.fields(RoundSettings):
        assert field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING, field.name
    yaml = OmegaConf.load(REPO_ROOT / "conf" / "selftrain" / "default.yaml")
    assert {f.name for f in dataclasses.fields(RoundSettings)} == set(yaml)
    RoundSettings(**OmegaConf.to_container(yaml))  # the shipped defaults are valid


def _scramble_pool_labels(monkeypatch) -> None:
    load = pipeline.load_splits

    def scrambled(cfg):
        splits = load(cfg)
        splits.pool.labels = np.random.default_rng(7).permutation(splits.pool.labels)
        return splits

    monkeypatch.setattr(pipeline, "load_splits", scrambled)


def test_pool_gold_labels_reach_the_diagnostics_only(synthetic_task, tmp_path, monkeypatch) -> None:
    """Scrambling the pool's gold labels changes the diagnostics and nothing else: no teacher (the NSP teacher
    included), filter, DataModule or student can have read them."""
    overrides = [PROMPT, "teachers=[classifier,nsp]", "teachers.nsp.epochs=2", *SHORT]
    outs = []
    for scramble in (False, True):
        out = tmp_path / f"scrambled_{scramble}"
        if scramble:
            _scramble_pool_labels(monkeypatch)
        pipeline.run(compose_config(tiny_overrides(synthetic_task, out) + overrides))
        outs.append(out)
    plain, scrambled = (pd.read_csv(o / "rounds" / "round_1" / "pseudo_labels.csv") for o in outs)
    pd.testing.assert_frame_equal(plain.drop(columns="gold"), scrambled.drop(columns="gold"))
    assert (plain["gold"] != scrambled["gold"]).any()
    a, b = (json.loads((o / "rounds" / "round_1" / "metrics.json").read_text()) for o in outs)
    for key in ("val/acc", "test/acc", "val/f1_macro", "teacher_nsp/val_acc", "pseudo/count"):
        assert a[key] == b[key], key
    assert a["pseudo/acc"] != b["pseudo/acc"]  # the diagnostics did see the (scrambled) gold


def test_a_resumed_run_builds_identical_teachers(synthetic_task, tmp_path) -> None:
    """Each teacher is seeded when it is built, so it does not depend on which teachers trained before it in
    this process: rebuilding the cloze teacher alone (resume) gives the same predictions."""
    overrides = [PROMPT, "teachers=[classifier,cloze]", "teachers.classifier.extra_seeds=1",
                 "teachers.cloze.epochs=2", *SHORT]
    cfg = compose_config(tiny_overrides(synthetic_task, tmp_path) + overrides)
    pipeline.run(cfg)
    first = dict(np.load(tmp_path / "teachers" / "cloze" / "predictions.npz"))
    shutil.rmtree(tmp_path / "teachers" / "cloze")
    shutil.rmtree(tmp_path / "rounds" / "round_1")
    (tmp_path / "results.json").unlink()  # as a run cut in round 1 would leave it
    pipeline.run(cfg)  # the extra-seed teacher and round 0 are reused: only the cloze teacher is rebuilt
    again = dict(np.load(tmp_path / "teachers" / "cloze" / "predictions.npz"))
    for split in first:
        np.testing.assert_array_equal(first[split], again[split])


def test_each_round_is_taught_by_the_last_student(synthetic_task, tmp_path) -> None:
    pipeline.run(compose_config(tiny_overrides(synthetic_task, tmp_path)))
    rounds = json.loads((tmp_path / "rounds.json").read_text())
    assert [r["teacher_round"] for r in rounds] == [None, 0, 1]


def test_teacher_best_stops_when_a_round_does_not_improve(synthetic_task, tmp_path) -> None:
    overrides = ["selftrain.teacher=best", "selftrain.min_improvement=2.0"]  # accuracy can never gain 2.0
    results = pipeline.run(compose_config(tiny_overrides(synthetic_task, tmp_path) + overrides))
    assert results["rounds_run"] == 2 and results["best_round"] == 0
    assert "teacher=best" in results["stop_reason"]


class _Linear(torch.nn.Module):
    """forward(batch) -> logits from the mean of the unmasked token embeddings."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(20, 3)

    def forward(self, batch):
        mask = batch["attention_mask"].unsqueeze(-1).float()
        return 5 * (self.embed(batch["input_ids"]) * mask).sum(1) / mask.sum(1)


def test_consistency_loss_masks_unconfident_examples_and_keeps_special_tokens() -> None:
    torch.manual_seed(0)
    module = _Linear()
    batch = {"input_ids": torch.randint(1, 20, (6, 8)), "attention_mask": torch.ones(6, 8, dtype=torch.long)}
    batch["attention_mask"][3:, 5:] = 0  # three shorter texts
    loss = Consistency(cutoff=0.5, threshold=0.0)
    cut = token_cutoff(batch["attention_mask"], 0.5)
    lengths = batch["attention_mask"].sum(1)
    assert (cut[:, 0] == 1).all() and all(cut[i, lengths[i] - 1] == 1 for i in range(6))  # [CLS]/[SEP] kept
    assert (cut <= batch["attention_mask"]).all() and (cut < batch["attention_mask"]).any()
    values = loss.per_example(module, batch)
    assert values.shape == (6,) and (values > 0).all()
    values.sum().backward()
    assert module.embed.weight.grad.abs().sum() > 0
    assert (Consistency(threshold=1.01).per_example(module, batch) == 0).all()  # nothing is confident enough


def test_a_malformed_class_prior_fails_before_training(synthetic_task, tmp_path) -> None:
    cfg = compose_config(tiny_overrides(synthetic_task, tmp_path) + ["task.class_prior=[0.5,0.3,0.2]"])
    with pytest.raises(AlpacaError, match="task.class_prior"):
        pipeline.run(cfg)
    assert not (tmp_path / "rounds").exists()


def test_supervised_cutoff_noises_the_student_input_only_when_asked() -> None:
    torch.manual_seed(0)
    module = _Linear()
    batch = {"input_ids": torch.randint(1, 20, (4, 8)), "attention_mask": torch.ones(4, 8, dtype=torch.long),
             "labels": torch.tensor([0, 1, 2, 0]), "weights": torch.ones(4)}
    clean = Supervised().per_example(module, batch)
    torch.testing.assert_close(clean, Supervised().per_example(module, batch))
    assert not torch.allclose(clean, Supervised(cutoff=0.5).per_example(module, batch))


def test_temperature_scaling_softens_an_overconfident_teacher() -> None:
    from alpaca_lightning.selftrain.calibration import fit_temperature, temper
    from alpaca_lightning.selftrain.diagnostics import expected_calibration_error

    rng = np.random.default_rng(0)
    gold = rng.integers(0, 3, size=300)
    # right 60% of the time, always 99% sure
    predicted = np.where(rng.random(300) < 0.6, gold, (gold + 1) % 3)
    probs = np.full((300, 3), 0.005)
    probs[np.arange(300), predicted] = 0.99
    temperature = fit_temperature(probs, gold)
    calibrated = temper(probs, temperature)
    assert temperature > 1.5
    assert (calibrated.argmax(1) == probs.argmax(1)).all()  # no prediction changes
    assert expected_calibration_error(calibrated, gold) < 0.05 < 0.3 < expected_calibration_error(probs, gold)
    assert fit_temperature(probs, np.full(300, -1)) == 1.0  # no known gold: leave the teacher as it is
