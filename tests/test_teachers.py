"""Teachers, fusion and label use in a real tiny-model run, plus the prompt rewriting each teacher relies on."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from alpaca_lightning.context import RunContext
from alpaca_lightning.errors import AlpacaError
from alpaca_lightning.models.backbone import load_tokenizer
from alpaca_lightning.models.prompt import IS_NEXT
from alpaca_lightning.pipeline import load_splits, run
from alpaca_lightning.selftrain.filters import SelectionContext
from alpaca_lightning.selftrain.fusion import Fused
from alpaca_lightning.selftrain.pseudo_labels import LabelUse, select_pseudo_labels
from alpaca_lightning.selftrain.teachers import ClozeTeacher, NextSentenceTeacher
from tests.conftest import compose_config, tiny_overrides

PROMPT = (
    "task.prompt={pattern:'{text} it was {mask}.',verbalizers:[awful,great],"
    "label_sentences:['it was awful.','it was great.']}"
)


@pytest.fixture(scope="module")
def fused_run(synthetic_task, tmp_path_factory):
    """Three teachers, agreement-only fusion, a curriculum and soft labels."""
    out = tmp_path_factory.mktemp("fused_run")
    overrides = [o for o in tiny_overrides(synthetic_task, out) if "class_balanced" not in o] + [PROMPT,
        "teachers=[classifier,cloze,nsp]", "fusion=agreement", "filters=[curriculum]", "selftrain.labels=soft",
        "selftrain.temperature=0.5", "teachers.cloze.epochs=30", "teachers.classifier.extra_seeds=1",
    ]
    cfg = compose_config(overrides)
    return cfg, out, run(cfg)


def test_prompt_teachers_train_once_and_predict_every_example(fused_run) -> None:
    cfg, out, _ = fused_run
    splits = load_splits(cfg)
    for name in ("cloze", "nsp"):
        assert (out / "teachers" / name / "COMPLETE").is_file()
        with np.load(out / "teachers" / name / "predictions.npz") as saved:
            assert saved["pool"].shape == (len(splits.pool), 2)
            assert saved["validation"].shape == (len(splits.validation), 2)
            np.testing.assert_allclose(saved["pool"].sum(axis=1), 1.0, rtol=1e-5)
        assert (out / "logs" / f"teacher_{name}" / "metrics.csv").is_file()  # it really trained
    rounds = json.loads((out / "rounds.json").read_text())
    for key in ("teacher_classifier/val_acc", "teacher_cloze/val_acc", "teacher_nsp/pool_acc", "teacher/val_acc"):
        assert key in rounds[1], key
    # The cloze teacher learns the synthetic task from 32 labels. The NSP teacher's (text, label sentence)
    # interaction stays at chance on the random 2-layer test model (its loss plateaus at ln 2), so only its
    # mechanics are checked here; its accuracy with MiniLM is measured by experiments/ablations.py.
    assert rounds[1]["teacher_cloze/pool_acc"] > 0.6


def test_classifier_teacher_averages_its_seed_ensemble(fused_run) -> None:
    cfg, out, _ = fused_run
    assert (out / "teachers" / "classifier_seed1" / "model" / "COMPLETE").is_file()
    members = (out / "rounds" / "round_0", out / "teachers" / "classifier_seed1")  # round 1's teacher is round 0
    best, extra = (np.load(m / "teacher_predictions" / "pool" / "probs.npy") for m in members)
    assert not np.allclose(best, extra)  # two different models
    table = pd.read_csv(out / "rounds" / "round_1" / "pseudo_labels.csv")
    with np.load(out / "teachers" / "cloze" / "predictions.npz") as cloze, np.load(
        out / "teachers" / "nsp" / "predictions.npz"
    ) as nsp:
        fused = ((best + extra) / 2 + cloze["pool"] + nsp["pool"]) / 3  # agreement = mean of the three teachers
    np.testing.assert_allclose(table[["prob_neg", "prob_pos"]].to_numpy(), fused[table["index"]], rtol=1e-4)


def test_agreement_fusion_keeps_only_unanimous_examples(fused_run) -> None:
    cfg, out, _ = fused_run
    folder = out / "rounds" / "round_1"
    members = (out / "rounds" / "round_0", out / "teachers" / "classifier_seed1")
    ensemble = [np.load(m / "teacher_predictions" / "pool" / "probs.npy") for m in members]
    tops = [np.mean(ensemble, axis=0).argmax(axis=1)]
    for name in ("cloze", "nsp"):
        with np.load(out / "teachers" / name / "predictions.npz") as saved:
            tops.append(saved["pool"].argmax(axis=1))
    unanimous = (tops[0] == tops[1]) & (tops[1] == tops[2])
    table = pd.read_csv(folder / "pseudo_labels.csv")
    assert unanimous[table["index"]].all()
    assert (table["label"] == tops[0][table["index"]]).all()
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["pseudo/eligible"] == int(unanimous.sum())


def test_curriculum_selection_grows_across_rounds(fused_run) -> None:
    _, out, _ = fused_run
    rounds = json.loads((out / "rounds.json").read_text())
    assert rounds[1]["pseudo/count"] < rounds[2]["pseudo/count"]


def test_soft_labels_train_on_tempered_distributions() -> None:
    probs = np.array([[0.8, 0.2], [0.4, 0.6]])
    selected = select_pseudo_labels(
        Fused(probs, np.ones(2, dtype=bool)), [], SelectionContext(1, np.array([0.5, 0.5])), np.array([0, 1])
    )
    hard = selected.training_fields(LabelUse("hard"))
    assert hard["targets"] is None and hard["labels"].tolist() == [0, 1] and hard["weights"].tolist() == [1, 1]
    soft = selected.training_fields(LabelUse("soft", temperature=0.5, weight_by_confidence=True))
    np.testing.assert_allclose(soft["targets"][0], [0.64 / 0.68, 0.04 / 0.68])  # p^2, renormalised
    np.testing.assert_allclose(soft["weights"], [0.8, 0.6])
    with pytest.raises(ValueError, match="selftrain.labels"):
        LabelUse("fuzzy")


def test_soft_loss_with_one_hot_targets_equals_hard_loss(synthetic_task, tmp_path) -> None:
    from alpaca_lightning.models.classifier import SequenceClassifier

    cfg = compose_config(tiny_overrides(synthetic_task, tmp_path))
    from hydra.utils import instantiate

    backbone = instantiate(cfg.model.backbone).materialize(tmp_path, ["a good movie", "a bad film"], 0)
    module = SequenceClassifier(backbone, 2, optimizer=torch.optim.AdamW, global_batch_size=2)
    module.trainer = type("T", (), {"world_size": 1})()  # training_step only reads world_size
    module.log = lambda *a, **k: None
    batch = {
        "input_ids": torch.tensor([[2, 10, 11, 3], [2, 12, 3, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]),
        "labels": torch.tensor([0, 1]),
        "weights": torch.ones(2),
    }
    module.eval()
    hard = module.training_step({"train": batch}, 0)
    soft = module.training_step({"train": {**batch, "targets": torch.eye(2)[batch["labels"]]}}, 0)
    torch.testing.assert_close(hard, soft)


def _context(splits, tokenizer, prompt) -> RunContext:
    return RunContext(
        kind=None, splits=splits, datamodule=None, make_datamodule=None, make_classifier=None, trainers=None,
        tokenizer=tokenizer, backbone_path="", run_dir=None, seed=0, global_batch_size=8,
        prompt=prompt,
    )


@pytest.fixture(scope="module")
def minilm_tokenizer():
    from alpaca_lightning.assets import resolve_model_name

    return load_tokenizer(resolve_model_name("sentence-transformers/all-MiniLM-L6-v2"))


def test_cloze_rewrites_texts_so_truncation_keeps_the_mask(synthetic_task, minilm_tokenizer) -> None:
    splits = load_splits(compose_config(tiny_overrides(synthetic_task, "/tmp/unused")))
    prompt = {"pattern": "{text} It was {mask}.", "verbalizers": ["terrible", "great"]}
    ctx = _context(splits, minilm_tokenizer, prompt)
    prompted = ClozeTeacher(module=None).prompted_splits(ctx)
    assert prompted.pool.texts[0] == (splits.pool.texts[0], "It was [MASK].")
    long_text = " ".join(["word"] * 300)
    encoded = minilm_tokenizer(long_text, "It was [MASK].", truncation=True, max_length=32)
    assert encoded["input_ids"].count(minilm_tokenizer.mask_token_id) == 1
    expected_ids = minilm_tokenizer.convert_tokens_to_ids(["terrible", "great"])
    assert ClozeTeacher(module=None).verbalizer_ids(ctx) == expected_ids
    prefix_prompt = {**prompt, "pattern": "{mask} news: {text}"}
    prefix = ClozeTeacher(module=None).prompted_splits(_context(splits, minilm_tokenizer, prefix_prompt))
    assert prefix.pool.texts[0] == ("[MASK] news:", splits.pool.texts[0])


def test_cloze_and_nsp_name_bad_prompts(synthetic_task, minilm_tokenizer) -> None:
    splits = load_splits(compose_config(tiny_overrides(synthetic_task, "/tmp/unused")))
    with pytest.raises(AlpacaError, match="single token"):
        ClozeTeacher(module=None).verbalizer_ids(
            _context(splits, minilm_tokenizer, {"pattern": "{text} {mask}", "verbalizers": ["unwatchable", "great"]})
        )
    with pytest.raises(AlpacaError, match="start or end with"):
        ClozeTeacher(module=None).prompted_splits(
            _context(splits, minilm_tokenizer, {"pattern": "Review: {text} It was {mask}.", "verbalizers": ["a", "b"]})
        )
    with pytest.raises(AlpacaError, match="task.prompt.label_sentences"):
        NextSentenceTeacher(module=None).prompted_splits(_context(splits, minilm_tokenizer, None))
    with pytest.raises(AlpacaError, match="one per label"):
        NextSentenceTeacher(module=None).prompted_splits(
            _context(splits, minilm_tokenizer, {"label_sentences": ["only one."]})
        )


def test_nsp_pairs_each_text_with_every_label_sentence(synthetic_task, minilm_tokenizer) -> None:
    splits = load_splits(compose_config(tiny_overrides(synthetic_task, "/tmp/unused")))
    ctx = _context(splits, minilm_tokenizer, {"label_sentences": ["It was bad.", "It was good."]})
    teacher = NextSentenceTeacher(module=None)
    pairs = teacher.prompted_splits(ctx).labelled
    assert len(pairs) == 2 * len(splits.labelled)
    assert pairs.texts[:2] == [(splits.labelled.texts[0], "It was bad."), (splits.labelled.texts[0], "It was good.")]
    gold = splits.labelled.labels[0]
    assert pairs.labels[gold] == IS_NEXT and pairs.labels[1 - gold] != IS_NEXT
    # scores: the is-next probabilities of one text's pairs, normalised over its label sentences
    pair_probs = np.array([[0.2, 0.8], [0.6, 0.4], [0.9, 0.1], [0.3, 0.7]])
    np.testing.assert_allclose(teacher.class_scores(pair_probs, 2), [[0.25, 0.75], [0.75, 0.25]])


@pytest.mark.parametrize("teacher,keys", [("cloze", "task.prompt.pattern"), ("nsp", "task.prompt.label_sentences")])
def test_prompt_teacher_without_prompt_fails_before_training(synthetic_task, tmp_path, monkeypatch, teacher,
                                                             keys) -> None:
    """README: a prompt teacher on a task without prompts fails before any training (not in round 1, after round 0
    has trained): no Trainer.fit call, no round, stage or teacher folder."""
    import pytorch_lightning as pl

    fits = []

    def spy_fit(trainer, *args, **kwargs):
        fits.append(trainer)
        raise AssertionError("Trainer.fit was called before the missing prompt was reported")

    monkeypatch.setattr(pl.Trainer, "fit", spy_fit)
    cfg = compose_config(tiny_overrides(synthetic_task, tmp_path) + [f"teachers=[classifier,{teacher}]",
                                                                   "stages=[contrastive,probe]"])
    with pytest.raises(AlpacaError, match=keys):
        run(cfg)
    assert fits == []
    assert not any((tmp_path / folder).exists() for folder in ("rounds", "stages", "teachers"))
