"""The similarity teacher: zero-shot labels from label sentences, and each teacher calibrated before fusion."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from alpaca_lightning.errors import AlpacaError
from alpaca_lightning.pipeline import load_splits, run
from alpaca_lightning.selftrain.calibration import fit_temperature, nll, temper
from alpaca_lightning.selftrain.similarity import LabelSimilarityTeacher, similarity_probabilities
from tests.conftest import compose_config, tiny_overrides

LABEL_SENTENCES = "task.prompt={label_sentences:['it was awful.','it was great.']}"


def test_each_text_leans_to_its_closest_label_sentence() -> None:
    labels = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    texts = np.array([[0.9, 0.1, 0.0], [0.1, 2.0, 0.3], [0.2, 0.1, 0.5]])  # lengths differ: cosine ignores them
    probs = similarity_probabilities(texts, labels)
    assert probs.argmax(axis=1).tolist() == [0, 1, 2]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    # near-equal cosines give near-uniform scores; a clear gap gives a confident one
    tied = similarity_probabilities(np.array([[1.0, 1.0, 0.0]]), labels)
    assert tied[0, 0] == pytest.approx(tied[0, 1])


def test_similarity_teacher_rejects_an_unknown_encoder() -> None:
    with pytest.raises(AlpacaError, match="round0"):
        LabelSimilarityTeacher(encoder="frozen")


def test_label_names_stand_in_for_missing_label_sentences(synthetic_task) -> None:
    from alpaca_lightning.context import RunContext

    splits = load_splits(compose_config(tiny_overrides(synthetic_task, "/tmp/unused")))

    def context(prompt):
        return RunContext(kind=None, splits=splits, datamodule=None, make_datamodule=None, make_classifier=None,
                          trainers=None, tokenizer=None, backbone_path="", run_dir=None, seed=0,
                          global_batch_size=8, prompt=prompt)

    teacher = LabelSimilarityTeacher()
    assert teacher.sentences(context(None)) == ["neg", "pos"]
    assert teacher.sentences(context({"label_sentences": ["bad.", "good."]})) == ["bad.", "good."]
    # each name in every template, label by label; label sentences, where given, are used as they are
    templated = LabelSimilarityTeacher(templates=["{label}", "This is {label}."])
    assert templated.sentences(context(None)) == ["neg", "This is neg.", "pos", "This is pos."]
    assert templated.sentences(context({"label_sentences": ["bad.", "good."]})) == ["bad.", "good."]
    with pytest.raises(AlpacaError, match="one \\{label\\} slot"):
        LabelSimilarityTeacher(templates=["This is it."])
    with pytest.raises(AlpacaError, match="one per label"):
        teacher.check(context({"label_sentences": ["bad.", "good.", "fine."]}))


def test_a_class_is_the_mean_of_its_templates_unit_embeddings() -> None:
    from alpaca_lightning.selftrain.similarity import class_embeddings

    # class 0: two templates pointing at x and y (lengths differ: each counts once); class 1: two at z
    sentences = np.array([[3.0, 0, 0], [0, 1.0, 0], [0, 0, 2.0], [0, 0, 5.0]])
    np.testing.assert_allclose(class_embeddings(sentences, 2), [[0.5, 0.5, 0], [0, 0, 1.0]])
    # a text between x and y leans to class 0 only through the average: neither template alone is closest
    text = np.array([[1.0, 1.0, 1.2]])
    assert similarity_probabilities(text, class_embeddings(sentences, 2)).argmax() == 0
    assert similarity_probabilities(text, sentences[[0, 2]]).argmax() == 1


@pytest.fixture(scope="module")
def similarity_run(synthetic_task, tmp_path_factory):
    out = tmp_path_factory.mktemp("similarity_run")
    cfg = compose_config(tiny_overrides(synthetic_task, out) + [
        LABEL_SENTENCES, "teachers=[classifier,similarity]", "fusion=product", "calibration=teachers",
        "teacher_selection=all", "selftrain.max_rounds=1",
    ])
    return cfg, out, run(cfg)


def test_similarity_teacher_predicts_once_with_calibrated_confidences(similarity_run) -> None:
    cfg, out, _ = similarity_run
    splits = load_splits(cfg)
    folder = out / "teachers" / "similarity"
    assert (folder / "COMPLETE").is_file()
    with np.load(folder / "probs.npz") as saved:
        pool, val = saved["pool"], saved["validation"]
    assert pool.shape == (len(splits.pool), 2) and val.shape == (len(splits.validation), 2)
    np.testing.assert_allclose(pool.sum(axis=1), 1.0, rtol=1e-6)
    # the temperature was fitted on validation: no other sharpness of the same scores fits it better
    gold = np.asarray(splits.validation.labels)
    logits = np.log(val)
    for scale in (0.5, 2.0):
        rescaled = np.exp(logits * scale) / np.exp(logits * scale).sum(axis=1, keepdims=True)
        assert nll(val, gold) <= nll(rescaled, gold) + 1e-9
    rounds = json.loads((out / "rounds.json").read_text())
    for key in ("teacher_similarity/val_acc", "teacher_similarity/pool_acc", "teacher_classifier/val_acc"):
        assert key in rounds[1], key


def test_each_teacher_is_calibrated_on_validation_before_the_product(similarity_run) -> None:
    """calibration=teachers: every teacher's own temperature (recorded), then fusion=product multiplies them."""
    cfg, out, _ = similarity_run
    gold = np.asarray(load_splits(cfg).validation.labels)
    metrics = json.loads((out / "rounds" / "round_1" / "metrics.json").read_text())
    teacher_folder = out / "rounds" / "round_0" / "teacher_predictions"
    classifier = {split: np.load(teacher_folder / split / "probs.npy") for split in ("pool", "validation")}
    temperature = metrics["calibration/temperature_classifier"]
    assert temperature == pytest.approx(fit_temperature(classifier["validation"], gold))
    with np.load(out / "teachers" / "similarity" / "probs.npz") as saved:
        similarity = temper(saved["pool"], metrics["calibration/temperature_similarity"])
    product = temper(classifier["pool"], temperature) * similarity
    fused = product / product.sum(axis=1, keepdims=True)
    table = pd.read_csv(out / "rounds" / "round_1" / "pseudo_labels.csv")
    np.testing.assert_allclose(table[["prob_neg", "prob_pos"]].to_numpy(), fused[table["index"]], rtol=1e-4)


@pytest.mark.slow
def test_teacher_selection_fuses_only_the_teachers_that_help_on_validation(synthetic_task, tmp_path) -> None:
    """The default teacher_selection=validation: round 1 records which teachers it fused, and its pseudo-labels
    carry exactly those teachers' product (calibrated where there are two, as predicted where one is left)."""
    cfg = compose_config(tiny_overrides(synthetic_task, tmp_path) + [
        LABEL_SENTENCES, "teachers=[classifier,similarity]", "fusion=product", "calibration=teachers",
        "teacher_selection=validation", "selftrain.max_rounds=1",
    ])
    run(cfg)
    metrics = json.loads((tmp_path / "rounds" / "round_1" / "metrics.json").read_text())
    fused_names = metrics["teachers/fused"].split("+")
    # the choice, recomputed from the saved validation predictions: similarity joins iff the calibrated product
    # has a lower validation NLL than the calibrated classifier alone
    gold = np.asarray(load_splits(cfg).validation.labels)
    with np.load(tmp_path / "teachers" / "similarity" / "probs.npz") as saved:
        similarity_val = temper(saved["validation"], metrics["calibration/temperature_similarity"])
    classifier_val = temper(np.load(tmp_path / "rounds" / "round_0" / "teacher_predictions" / "validation" /
                                    "probs.npy"), metrics["calibration/temperature_classifier"])
    both = classifier_val * similarity_val
    helps = nll(both / both.sum(axis=1, keepdims=True), gold) < nll(classifier_val, gold)
    assert fused_names == (["classifier", "similarity"] if helps else ["classifier"])
    classifier = np.load(tmp_path / "rounds" / "round_0" / "teacher_predictions" / "pool" / "probs.npy")
    product = classifier  # a teacher left alone is used as it predicts
    if "similarity" in fused_names:  # both calibrated, then multiplied
        with np.load(tmp_path / "teachers" / "similarity" / "probs.npz") as saved:
            product = (temper(classifier, metrics["calibration/temperature_classifier"])
                       * temper(saved["pool"], metrics["calibration/temperature_similarity"]))
    fused = product / product.sum(axis=1, keepdims=True)
    table = pd.read_csv(tmp_path / "rounds" / "round_1" / "pseudo_labels.csv")
    np.testing.assert_allclose(table[["prob_neg", "prob_pos"]].to_numpy(), fused[table["index"]], rtol=1e-4)


def test_checked_selection_fuses_the_similarity_teacher_only_where_its_checks_pass(synthetic_task, tmp_path) -> None:
    """teacher_selection=checked with the label names as the only prompt and the backbone as the encoder: the
    similarity teacher also predicts the labelled set (it never trained on it), and its three checks are recomputed
    from the saved predictions; it is fused only where the checks that are on pass and the fused validation NLL
    drops."""
    from alpaca_lightning.selftrain.prior import pool_prior
    from alpaca_lightning.selftrain.stats import above_chance_p_value, agreement_z, class_share_distance

    cfg = compose_config(tiny_overrides(synthetic_task, tmp_path) + [
        "teachers=[classifier,similarity]", "teachers.similarity.encoder=backbone", "fusion=product",
        "calibration=teachers", "teacher_selection=checked", "selftrain.max_rounds=1",
    ])
    run(cfg)
    splits = load_splits(cfg)
    metrics = json.loads((tmp_path / "rounds" / "round_1" / "metrics.json").read_text())
    with np.load(tmp_path / "teachers" / "similarity" / "probs.npz") as saved:
        similarity = {split: saved[split] for split in ("labelled", "pool", "validation")}
    teacher_folder = tmp_path / "rounds" / "round_0" / "teacher_predictions"
    classifier = {split: np.load(teacher_folder / split / "probs.npy") for split in ("pool", "validation")}
    gold = np.concatenate([splits.validation.labels, splits.labelled.labels])
    gold_p = above_chance_p_value(np.concatenate([similarity["validation"], similarity["labelled"]]).argmax(1), gold)
    assert metrics["teacher_similarity/check_gold_p"] == pytest.approx(gold_p)
    z = agreement_z(similarity["pool"].argmax(1), classifier["pool"].argmax(1))
    assert metrics["teacher_similarity/check_agreement_z"] == pytest.approx(z)
    prior = pool_prior(None, temper(classifier["pool"], metrics["calibration/temperature_classifier"]),
                       np.asarray(splits.labelled.labels))
    distance = class_share_distance(similarity["pool"].argmax(1), prior)
    assert metrics["teacher_similarity/check_prior_distance"] == pytest.approx(distance)
    if not gold_p < 0.05:  # the shipped checked.yaml: the gold check only
        assert metrics["teachers/fused"] == "classifier"
    else:
        assert metrics["teachers/fused"] in ("classifier", "classifier+similarity")


def test_teacher_checks_replays_the_checks_and_the_guard_from_a_run_folder(similarity_run) -> None:
    from experiments.teacher_checks import replay, run_folders
    from alpaca_lightning.selftrain.stats import above_chance_p_value, sign_test
    from alpaca_lightning.selftrain.teacher_selection import CheckedSelection

    cfg, out, _ = similarity_run
    assert run_folders([out]) == [out]
    (row,) = replay(out, CheckedSelection())
    gold = np.asarray(load_splits(cfg).validation.labels)
    with np.load(out / "teachers" / "similarity" / "probs.npz") as saved:
        assert row["gold_p"] == pytest.approx(above_chance_p_value(saved["validation"].argmax(1), gold))
    correct = [np.load(out / "rounds" / f"round_{k}" / "predictions.npz")["validation"].argmax(1) == gold
               for k in (0, 1)]
    lost, gained, p_value = sign_test(*correct)
    assert row["lost/gained on val"] == f"{lost}/{gained}" and row["sign test p"] == pytest.approx(p_value)
    assert row["checked lets it in"] is (row["gold_p"] < 0.05)
