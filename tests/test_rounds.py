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
from hydra.utils import instantiate
from omegaconf import OmegaConf

from alpaca_lightning import pipeline
from alpaca_lightning.assets import REPO_ROOT
from alpaca_lightning.errors import AlpacaError
from alpaca_lightning.models.losses import Consistency, Supervised, token_cutoff
from alpaca_lightning.selftrain.settings import RoundSettings
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

    def scrambled(cfg, kind=None):
        splits = load(cfg, kind)
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


def test_labelled_share_reaches_the_students_training_set(synthetic_task, tmp_path) -> None:
    """selftrain.labelled_share=0.75: a student trains on three (repeated) labelled examples per pseudo-label;
    round 0 trains on the labelled set once."""
    overrides = ["selftrain.labelled_share=0.75", "selftrain.max_rounds=1"]
    pipeline.run(compose_config(tiny_overrides(synthetic_task, tmp_path) + overrides))
    round_0, round_1 = json.loads((tmp_path / "rounds.json").read_text())
    assert round_0["train_size"] == 32
    pseudo = round_1["pseudo/count"]
    copies = round(3 * pseudo / 32)
    assert copies >= 3 and round_1["train_size"] == 32 * copies + pseudo


def test_teacher_best_stops_when_a_round_does_not_improve(synthetic_task, tmp_path) -> None:
    overrides = ["schedule=best_teacher",
                 "selftrain.min_improvement=2.0"]  # accuracy can never gain 2.0
    results = pipeline.run(compose_config(tiny_overrides(synthetic_task, tmp_path) + overrides))
    assert results["rounds_run"] == 2 and results["best_round"] == 0
    assert "schedule=best_teacher" in results["stop_reason"]


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


def test_expected_precision_reads_the_calibrated_confidence_not_the_raw_one() -> None:
    """A teacher 99% sure and 60% right on validation: its raw confidence says 0.99, the estimate says about 0.6;
    a teacher that is right as often as it is sure keeps its estimate."""
    from alpaca_lightning.selftrain.calibration import expected_precision

    rng = np.random.default_rng(1)
    gold = rng.integers(0, 2, size=400)
    right = rng.random(400) < 0.6
    over = np.full((400, 2), 0.01)
    over[np.arange(400), np.where(right, gold, 1 - gold)] = 0.99
    assert abs(expected_precision(over[:200], over[200:], gold[200:]) - 0.6) < 0.08
    honest = np.full((400, 2), 0.1)
    right = rng.random(400) < 0.9
    honest[np.arange(400), np.where(right, gold, 1 - gold)] = 0.9
    assert abs(expected_precision(honest[:200], honest[200:], gold[200:]) - 0.9) < 0.05
    assert np.isnan(expected_precision(honest[:0], honest, gold))


def test_min_precision_stops_before_a_round_whose_labels_would_be_too_often_wrong(synthetic_task, tmp_path) -> None:
    """The estimate is recorded in every round; a round below selftrain.min_precision does not run and the run says
    why. min_precision=1.0 cannot be met by an estimate from a finite validation set."""
    base = tiny_overrides(synthetic_task, tmp_path / "open") + ["selftrain.max_rounds=1"]
    pipeline.run(compose_config(base))
    opened = json.loads((tmp_path / "open" / "rounds.json").read_text())
    assert len(opened) == 2 and 0.5 <= opened[1]["pseudo/expected_precision"] < 1.0
    gated = tiny_overrides(synthetic_task, tmp_path / "gated") + ["selftrain.max_rounds=1",
                                                                  "selftrain.min_precision=1.0"]
    pipeline.run(compose_config(gated))
    results = json.loads((tmp_path / "gated" / "results.json").read_text())
    assert results["rounds_run"] == 1 and results["best_round"] == 0
    assert "below selftrain.min_precision=1.0" in results["stop_reason"]
    assert not (tmp_path / "gated" / "rounds" / "round_1" / "COMPLETE").exists()


def test_max_prior_distance_stops_before_a_round_whose_labels_are_skewed_against_the_prior(
    synthetic_task, tmp_path
) -> None:
    """The selection's distance from the pool's prior (here given: task.class_prior) is recorded; a gate just
    below it refuses the round, and just above it lets the round run."""
    base = tiny_overrides(synthetic_task, tmp_path / "open") + ["selftrain.max_rounds=1", "task.class_prior=[0.8,0.2]"]
    pipeline.run(compose_config(base))
    opened = json.loads((tmp_path / "open" / "rounds.json").read_text())
    table = pd.read_csv(tmp_path / "open" / "rounds" / "round_1" / "pseudo_labels.csv")
    shares = np.bincount(table["label"], minlength=2) / len(table)
    distance = 0.5 * np.abs(shares - [0.8, 0.2]).sum()
    assert opened[1]["pseudo/prior_distance"] == pytest.approx(distance) and distance > 0
    for name, gate, runs in (("below", distance * 0.99, False), ("above", min(1.0, distance * 1.01), True)):
        out = tmp_path / name
        pipeline.run(compose_config(tiny_overrides(synthetic_task, out) + [
            "selftrain.max_rounds=1", "task.class_prior=[0.8,0.2]", f"selftrain.max_prior_distance={gate}"]))
        results = json.loads((out / "results.json").read_text())
        assert results["rounds_run"] == (2 if runs else 1), name
        assert ("beyond selftrain.max_prior_distance" in results["stop_reason"]) is not runs


@pytest.mark.parametrize("value", [0.0, 1.5])
def test_a_min_precision_outside_0_1_is_refused(value) -> None:
    yaml = OmegaConf.to_container(OmegaConf.load(REPO_ROOT / "conf" / "selftrain" / "default.yaml"))
    with pytest.raises(AlpacaError, match="selftrain.min_precision must lie in"):
        RoundSettings(**{**yaml, "min_precision": value})


# --- the schedule: patience, min_improvement, kept models, student_init (scripted scores, no training) ------------


def _settings(**changes) -> RoundSettings:
    yaml = OmegaConf.to_container(OmegaConf.load(REPO_ROOT / "conf" / "selftrain" / "default.yaml"))
    return RoundSettings(**{**yaml, **changes})


def _plugin(group: str, option: str, **params):
    """One option of a round-loop config group, built from its shipped YAML."""
    return instantiate({**OmegaConf.to_container(OmegaConf.load(REPO_ROOT / "conf" / group / f"{option}.yaml")),
                        **params})


def _scripted_loop(tmp_path, scores: list[float], schedule: str = "monitor", keep_all_models: bool = False,
                   student_init: str = "continue", **settings):
    """A SelfTrainingLoop whose rounds are replaced by records with the given validation scores. Each fake round
    writes a model folder, as a real one does, and notes whether its teacher's model was still on disk."""
    from alpaca_lightning.context import HiddenPoolLabels, RunContext
    from alpaca_lightning.selftrain.fusion import MeanFusion
    from alpaca_lightning.selftrain.plan import TrainingPlan
    from alpaca_lightning.selftrain.records import RoundRecord
    from alpaca_lightning.selftrain.rounds import RoundPlugins, SelfTrainingLoop

    ctx = RunContext(kind=None, splits=None, datamodule=None, make_datamodule=None, make_classifier=None,
                     trainers=None, tokenizer=None, backbone_path=str(tmp_path / "backbone"), run_dir=tmp_path,
                     seed=0, global_batch_size=8)
    plan = TrainingPlan(str(tmp_path / "encoder"), None, None, 1, 1)
    plugins = RoundPlugins(
        teachers=[], fusion=MeanFusion(), filters=[],
        schedule=_plugin("schedule", schedule, keep_all_models=keep_all_models),
        calibration=_plugin("calibration", "none"), teacher_selection=_plugin("teacher_selection", "all"),
        student_init=_plugin("student_init", student_init),
    )
    loop = SelfTrainingLoop(ctx, plan, plugins, _settings(**settings), HiddenPoolLabels(np.array([])))
    loop.teacher_model_present = {}

    def fake_round(k: int, teacher_round: int | None) -> RoundRecord:
        if teacher_round is not None:
            loop.teacher_model_present[k] = (loop.round_dir(teacher_round) / "model").is_dir()
        (loop.round_dir(k) / "model").mkdir(parents=True)
        return RoundRecord(k, teacher_round, 10, {loop.settings.monitor: scores[k]})

    loop._reuse = lambda k: None
    loop._round_zero = lambda: fake_round(0, None)
    loop._round = fake_round
    return loop


def _run(loop) -> tuple[list[int], int]:
    records = loop.run()
    return [r.round for r in records], next(r.round for r in records if r.best)


def test_patience_stops_after_that_many_rounds_without_improvement(tmp_path) -> None:
    scores = [0.5, 0.6, 0.55, 0.58, 0.7]  # round 1 is the best; rounds 2 and 3 do not beat it
    loop = _scripted_loop(tmp_path / "p2", scores, max_rounds=4, patience=2)
    assert _run(loop) == ([0, 1, 2, 3], 1)
    assert "selftrain.patience" in loop.stop_reason
    assert _run(_scripted_loop(tmp_path / "p3", scores, max_rounds=4, patience=3)) == ([0, 1, 2, 3, 4], 4)
    assert _run(_scripted_loop(tmp_path / "none", scores, max_rounds=4, patience=None)) == ([0, 1, 2, 3, 4], 4)


def test_min_improvement_is_the_gain_a_round_must_exceed(tmp_path) -> None:
    # 0.505 and 0.508 gain less than 0.01 over round 0, so round 0 stays the best; without a margin round 2 wins
    assert _run(_scripted_loop(tmp_path / "a", [0.5, 0.505, 0.508], max_rounds=2, min_improvement=0.01)) == (
        [0, 1, 2], 0)
    assert _run(_scripted_loop(tmp_path / "b", [0.5, 0.505, 0.508], max_rounds=2, min_improvement=0.0)) == (
        [0, 1, 2], 2)
    # a gain of exactly min_improvement is not enough (0.25 is exact in binary); with patience 1 that ends the run
    assert _run(_scripted_loop(tmp_path / "c", [0.5, 0.75, 0.9], max_rounds=2, patience=1,
                               min_improvement=0.25)) == ([0, 1], 0)
    # a loss monitor improves downwards: 0.6 beats 0.7 by 0.1 > 0.05, 0.58 beats 0.6 by only 0.02
    assert _run(_scripted_loop(tmp_path / "d", [0.7, 0.6, 0.58], max_rounds=2, monitor="val/nll",
                               min_improvement=0.05)) == ([0, 1, 2], 1)


def test_kept_models_are_the_reported_one_and_the_next_teachers(tmp_path) -> None:
    scores = [0.5, 0.7, 0.6, 0.65]  # round 1 is the best
    loop = _scripted_loop(tmp_path / "best", scores, max_rounds=3)
    _run(loop)
    assert loop.teacher_model_present == {1: True, 2: True, 3: True}  # the chain: round k-1 taught round k
    assert sorted(p.parent.name for p in (tmp_path / "best" / "rounds").glob("round_*/model")) == ["round_1"]
    loop = _scripted_loop(tmp_path / "all", scores, max_rounds=3, keep_all_models=True)
    _run(loop)
    assert len(list((tmp_path / "all" / "rounds").glob("round_*/model"))) == 4


def test_schedule_last_reports_the_last_round_and_keeps_only_its_model(tmp_path) -> None:
    scores = [0.5, 0.7, 0.6, 0.65]  # validation would pick round 1
    loop = _scripted_loop(tmp_path / "last", scores, schedule="last", max_rounds=3)
    assert _run(loop) == ([0, 1, 2, 3], 3)
    assert sorted(p.parent.name for p in (tmp_path / "last" / "rounds").glob("round_*/model")) == ["round_3"]
    # patience still reads validation: rounds 2 and 3 do not beat round 1, so the run ends at 3 and reports it
    loop = _scripted_loop(tmp_path / "patience", [0.5, 0.7, 0.6, 0.65, 0.9], schedule="last", max_rounds=4,
                          patience=2)
    assert _run(loop) == ([0, 1, 2, 3], 3)
    assert "selftrain.patience" in loop.stop_reason


def test_schedule_best_teacher_teaches_from_the_best_round_and_stops_at_the_first_that_does_not_improve(
    tmp_path,
) -> None:
    loop = _scripted_loop(tmp_path, [0.5, 0.7, 0.75, 0.6, 0.9], schedule="best_teacher", max_rounds=4)
    assert _run(loop) == ([0, 1, 2, 3], 2)
    assert [r for r in loop.teacher_model_present] == [1, 2, 3]
    assert "schedule=best_teacher" in loop.stop_reason


def test_schedule_guarded_reports_the_teacher_of_a_student_that_is_worse_on_validation(tmp_path) -> None:
    """A student that loses 6 of its teacher's 20 right validation answers and gains none (sign test p = 1/64)
    ends the run: it is neither reported nor kept, its teacher round is. A loss of 2 (p = 1/4) is noise."""
    right = {0: 10, 1: 14, 2: 12, 3: 6, 4: 20}  # of 20 validation examples, the first ``right`` of them

    def scripted(name: str, alpha: float):
        loop = _scripted_loop(tmp_path / name, [0.5, 0.7, 0.6, 0.3, 1.0], schedule="guarded", max_rounds=4)
        loop.plugins.schedule.alpha = alpha
        loop._val_correct = lambda k: np.arange(20) < right[k]
        return loop

    loop = scripted("guarded", 0.05)
    assert _run(loop) == ([0, 1, 2, 3], 2)
    assert "worse than its teacher, round 2" in loop.stop_reason and "6 examples" in loop.stop_reason
    assert sorted(p.parent.name for p in (tmp_path / "guarded" / "rounds").glob("round_*/model")) == ["round_2"]
    # alpha below 1/64: round 3's loss is not clear enough, the chain goes on and the last round is reported
    assert _run(scripted("strict", 0.01)) == ([0, 1, 2, 3, 4], 4)


def test_student_init_reset_starts_each_student_from_the_round_0_encoder(tmp_path) -> None:
    teacher = tmp_path / "rounds" / "round_1" / "model"
    reset = _scripted_loop(tmp_path, [0.5], student_init="reset")
    assert reset.plugins.student_init.start(2, teacher, None, reset.ctx, reset.plan, []) == str(tmp_path / "encoder")
    carry_on = _scripted_loop(tmp_path, [0.5], student_init="continue")
    assert carry_on.plugins.student_init.start(2, teacher, None, carry_on.ctx, carry_on.plan, []) == str(teacher)


def _learning_rates(synthetic_task, tmp_path, monkeypatch, overrides: list[str]) -> tuple[list[float], float]:
    """The optimizer learning rate of every classifier that a short run builds, in order, and the model's lr."""
    rates: list[float] = []
    build_context = pipeline.build_context

    def spying_context(*args, **kwargs):
        ctx = build_context(*args, **kwargs)
        make = ctx.make_classifier

        def recording(path, lr=None):
            module = make(path, lr)
            rates.append(module.optimizer_factory.keywords["lr"])
            return module

        return dataclasses.replace(ctx, make_classifier=recording)

    monkeypatch.setattr(pipeline, "build_context", spying_context)
    cfg = compose_config(tiny_overrides(synthetic_task, tmp_path) + [*SHORT, *overrides])
    pipeline.run(cfg)
    return rates, cfg.model.classifier.optimizer.lr


def test_round_0_and_the_students_train_at_their_own_learning_rates(synthetic_task, tmp_path, monkeypatch) -> None:
    """selftrain.supervised_lr reaches round 0's optimizer and selftrain.student_lr the student's; the model's lr is
    the fallback, and the prediction-only builds (the teacher predicting the pool) keep it."""
    rates, model_lr = _learning_rates(synthetic_task, tmp_path, monkeypatch,
                                      ["selftrain.supervised_lr=0.004", "selftrain.student_lr=0.0007"])
    assert model_lr not in (0.004, 0.0007)
    assert rates == [0.004, model_lr, model_lr, 0.0007]  # round 0, teacher on pool and validation, student


@pytest.mark.parametrize("explicit", [False, True])
def test_the_probe_stage_sets_the_fine_tuning_learning_rate_unless_the_config_does(
    synthetic_task, tmp_path, monkeypatch, explicit: bool
) -> None:
    """LP-FT: stages.probe.finetune_lr is the rate of round 0 and the students, which descend from the probe's head;
    selftrain.supervised_lr overrides it for round 0 only. Prediction-only builds keep the model's rate."""
    overrides = ["stages=[probe]", "stages.probe.finetune_lr=0.0021"] + (["selftrain.supervised_lr=0.004"] * explicit)
    rates, model_lr = _learning_rates(synthetic_task, tmp_path, monkeypatch, overrides)
    assert model_lr not in (0.0021, 0.004)
    round_0 = 0.004 if explicit else 0.0021
    assert rates == [model_lr, round_0, model_lr, model_lr, 0.0021]  # probe fit, round 0, teacher x2, student


@pytest.mark.parametrize("key", ["supervised_lr", "student_lr"])
def test_a_learning_rate_that_is_not_positive_is_refused(key) -> None:
    yaml = OmegaConf.to_container(OmegaConf.load(REPO_ROOT / "conf" / "selftrain" / "default.yaml"))
    with pytest.raises(AlpacaError, match=f"selftrain.{key} must be > 0"):
        RoundSettings(**{**yaml, key: 0.0})


@pytest.mark.parametrize("share", [0.0, 1.0, 1.5])
def test_a_labelled_share_outside_0_1_is_refused(share) -> None:
    yaml = OmegaConf.to_container(OmegaConf.load(REPO_ROOT / "conf" / "selftrain" / "default.yaml"))
    with pytest.raises(AlpacaError, match="selftrain.labelled_share must lie strictly between 0 and 1"):
        RoundSettings(**{**yaml, "labelled_share": share})


def test_a_reset_student_is_built_from_the_round_0_encoder(synthetic_task, tmp_path, monkeypatch) -> None:
    """In a real run: round 0 builds from the encoder, round 1's teacher loads round 0's model to predict the pool
    and validation (once each), and round 1's student (student_init=reset) builds from the encoder again, not from
    its teacher."""
    built: list[str] = []
    build_context = pipeline.build_context

    def spying_context(*args, **kwargs):
        ctx = build_context(*args, **kwargs)
        make = ctx.make_classifier
        return dataclasses.replace(ctx, make_classifier=lambda path, lr=None: built.append(str(path)) or make(path, lr))

    monkeypatch.setattr(pipeline, "build_context", spying_context)
    cfg = compose_config(tiny_overrides(synthetic_task, tmp_path) + [*SHORT, "student_init=reset"])
    pipeline.run(cfg)
    encoder = str(tmp_path / "backbone")  # stages=[]: the round-0 encoder is the backbone
    teacher = str(tmp_path / "rounds" / "round_0" / "model")
    assert built == [encoder, teacher, teacher, encoder]
