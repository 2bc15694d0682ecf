"""Token classification (named entities) through the same round loop: reading and checking tagged data, greedy
K-shot sampling, word alignment, entity-level scores, and whole tiny runs on one and two processes."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from alpaca_lightning import pipeline
from alpaca_lightning.data.token_datamodule import encode_words
from alpaca_lightning.data.tokens import (
    TokenFileSource, entity_counts, greedy_k_shot, map_tags, tag_names, word_tags,
)
from alpaca_lightning.errors import AlpacaError, DataError
from alpaca_lightning.models.backbone import load_tokenizer
from alpaca_lightning.selftrain.prediction import Predictions
from alpaca_lightning.tasks.tokens import entity_metrics
from tests.conftest import compose_config
from tests.test_use_model import without_package
from tests.token_data import ner_overrides, synthetic_sentences, token_task, write_conll

TYPES = ["PER", "LOC", "ORG", "MISC"]
NAMES = tag_names(TYPES, "IOB2")


@pytest.fixture(scope="module")
def ner_task(tmp_path_factory) -> dict[str, Path]:
    return token_task(tmp_path_factory.mktemp("ner_data"))


@pytest.fixture(scope="module")
def ner_run(ner_task, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ner_run")
    pipeline.run(compose_config(ner_overrides(ner_task, out)))
    return out


# --- reading and checking ------------------------------------------------------------------------------------------
def test_conll_and_jsonl_files_read_the_same_sentences(tmp_path) -> None:
    sentences = synthetic_sentences(20, seed=1)
    conll = TokenFileSource(str(write_conll(tmp_path / "a.conll", sentences))).read()
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text("\n".join(json.dumps({"tokens": w, "tags": t}) for w, t in sentences))
    assert conll == TokenFileSource(str(jsonl)).read() == [(list(w), list(t)) for w, t in sentences]


@pytest.mark.parametrize("words, tags, invalid, message", [
    (["a", "b"], ["O"], "refuse", "2 tokens but 1 tags"),
    (["a"], ["B-FOOD"], "refuse", "outside the task's tag set"),
    (["a", "b"], ["O", "I-PER"], "refuse", "invalid_tags=repair"),
    ([], [], "refuse", "is empty"),
    (["a", "b"], ["S-PER", "O"], "refuse", "task.kind.scheme=BIOES"),
])
def test_bad_token_data_is_refused_with_the_fix(words, tags, invalid, message) -> None:
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace(".", r"\.")):
        map_tags([(["ok"], ["O"]), (words, tags)], TYPES, "IOB2", invalid, "train.conll")


def test_an_i_tag_after_o_is_repaired_when_asked() -> None:
    split = map_tags([(["a", "b", "c"], ["O", "I-PER", "I-PER"])], TYPES, "IOB2", "repair", "x")
    assert [NAMES[t] for t in split.labels[0]] == ["O", "B-PER", "I-PER"]


def test_a_missing_token_file_names_the_setting(tmp_path) -> None:
    with pytest.raises(DataError, match="sources.*path"):
        TokenFileSource(str(tmp_path / "absent.conll")).read()


# --- few-shot sampling ---------------------------------------------------------------------------------------------
def test_greedy_k_shot_covers_every_type_k_times_and_is_minimal() -> None:
    split = map_tags(synthetic_sentences(300, seed=2), TYPES, "IOB2", "refuse", "x")
    chosen = greedy_k_shot(split, NAMES, TYPES, 5, np.arange(len(split)), np.random.default_rng(0))
    counts = [entity_counts(split.labels[i], NAMES) for i in chosen]
    total = sum(counts, Counter())
    assert all(total[t] >= 5 for t in TYPES)
    for i in range(len(chosen)):  # removing any chosen sentence leaves some type short of K
        without = total - counts[i]
        assert any(without[t] < 5 for t in TYPES)
    again = greedy_k_shot(split, NAMES, TYPES, 5, np.arange(len(split)), np.random.default_rng(0))
    assert chosen.tolist() == again.tolist()


def test_too_few_mentions_for_k_is_a_clear_error() -> None:
    split = map_tags(synthetic_sentences(10, seed=3), TYPES, "IOB2", "refuse", "x")
    with pytest.raises(DataError, match="lower split.labels_per_class"):
        greedy_k_shot(split, NAMES, TYPES, 50, np.arange(len(split)), np.random.default_rng(0))


# --- word alignment ------------------------------------------------------------------------------------------------
def test_long_sentences_are_split_at_word_boundaries_never_cut(ner_run) -> None:
    tokenizer = load_tokenizer(str(ner_run / "backbone"))  # the tiny model's WordPiece vocabulary
    split = map_tags(synthetic_sentences(30, seed=4), TYPES, "IOB2", "refuse", "x")
    encoded = encode_words(tokenizer, split, max_length=8, name="test")
    units = np.concatenate(encoded.word_units)
    assert sorted(units.tolist()) == list(range(int(split.word_counts.sum())))  # every word exactly once
    assert max(len(ids) for ids in encoded.input_ids) <= 8
    assert len(encoded) > len(split)  # some sentences needed more than one piece


# --- scoring -------------------------------------------------------------------------------------------------------
def test_entity_scores_are_strict_entity_level() -> None:
    gold = word_tags(map_tags([(["a", "b", "c", "d"], ["B-PER", "I-PER", "O", "B-LOC"])], TYPES, "IOB2", "refuse", "x"))
    predicted = [NAMES.index(t) for t in ["B-PER", "O", "O", "B-LOC"]]  # PER cut short: wrong; LOC right
    scores = entity_metrics(Predictions(np.eye(len(NAMES))[predicted]), gold, NAMES, "IOB2", "test")
    assert scores["test/precision"] == scores["test/recall"] == scores["test/f1"] == 0.5
    assert scores["test/f1_LOC"] == 1.0 and scores["test/f1_PER"] == 0.0
    assert scores["test/acc"] == 0.75


# --- whole runs ----------------------------------------------------------------------------------------------------
def test_a_token_run_goes_through_every_round_with_entity_scores(ner_run) -> None:
    rounds = json.loads((ner_run / "rounds.json").read_text())
    results = json.loads((ner_run / "results.json").read_text())
    assert [r["round"] for r in rounds] == [0, 1, 2]
    assert results["monitor"] == "val/f1" and "test/f1" in results["best"]
    assert {"test/f1_PER", "test/f1_LOC", "test/f1_ORG", "test/f1_MISC", "test/acc"} <= set(rounds[0])
    assert rounds[0]["test/f1"] > 0.3  # the tiny model learns the synthetic entities from a few sentences
    selected = pd.read_csv(ner_run / "rounds" / "round_1" / "pseudo_labels.csv")
    pool_words = len(np.load(ner_run / "rounds" / "round_0" / "teacher_predictions" / "pool" / "probs.npy"))
    # partial annotation: the filter keeps single words, not whole sentences
    assert 0 < len(selected) == rounds[1]["pseudo/count"] < pool_words
    assert "entity F1" in (ner_run / "report.md").read_text()
    # entity-level diagnostics of the kept pseudo-labels, overall and per type
    assert 0 < rounds[1]["pseudo_entities/precision"] <= 1 and 0 < rounds[1]["pseudo_entities/recall"] <= 1
    assert {"pseudo_entities/precision_PER", "pseudo_entities/recall_LOC"} <= set(rounds[1])


def test_lexicon_teacher_whole_sentences_and_soft_targets(ner_task, tmp_path) -> None:
    replaced = ("fusion=", "calibration=", "teacher_selection=", "selftrain.max_rounds=", "filters")
    overrides = [o for o in ner_overrides(ner_task, tmp_path) if not o.startswith(replaced)]
    cfg = compose_config(overrides + [
        "teachers=[classifier,lexicon]", "fusion=product", "calibration=teachers", "teacher_selection=validation",
        "filters=[sentence_confidence]", "filters.sentence_confidence.threshold=0.5", "selftrain.max_rounds=1",
        "selftrain.labels=soft",  # per-word tag distributions as targets
    ])
    pipeline.run(cfg)
    record = json.loads((tmp_path / "rounds.json").read_text())[1]
    assert record["teacher_lexicon/val_f1"] > 0.3 and record["teachers/fused"]
    # whole sentences only: every pool sentence is in or out with all its words
    selected = pd.read_csv(tmp_path / "rounds" / "round_1" / "pseudo_labels.csv")["index"].to_numpy()
    kind = pipeline.task_kind(cfg)
    sentence_of = kind.unit_groups(pipeline.load_splits(cfg, kind), "pool")
    kept = np.isin(np.arange(len(sentence_of)), selected)
    assert 0 < kept.sum() < len(kept)
    for sentence in np.unique(sentence_of[kept]):
        assert kept[sentence_of == sentence].all()


def test_a_finished_token_run_is_reused(ner_task, ner_run) -> None:
    before = (ner_run / "results.json").read_text()
    pipeline.run(compose_config(ner_overrides(ner_task, ner_run)))
    assert (ner_run / "results.json").read_text() == before


@pytest.mark.parametrize("override, group", [("stages=[contrastive]", "stages"), ("stages=[probe]", "stages"),
                                             ("teachers=[classifier,similarity]", "teachers")])
def test_sentence_only_plug_ins_are_refused_on_token_tasks(ner_task, tmp_path, override, group) -> None:
    cfg = compose_config(ner_overrides(ner_task, tmp_path) + [override])
    with pytest.raises(AlpacaError, match=f"{group} '.*' works on whole sentences.*experiment=ner"):
        pipeline.run(cfg)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not available")
def test_a_token_run_on_two_processes_matches_one(ner_task, ner_run, tmp_path) -> None:
    pipeline.run(compose_config(ner_overrides(ner_task, tmp_path) + ["hardware=ddp_cpu"]))
    shards = tmp_path / "rounds" / "round_0" / "teacher_predictions" / ".pool.shards"
    parts = [torch.load(shards / f"rank{r}-of-2.pt") for r in range(2)]
    index = torch.cat([p["index"] for p in parts]).tolist()
    assert all(len(p["index"]) for p in parts) and sorted(index) == list(range(len(index)))  # each word once
    for single, ddp in zip(*(json.loads((out / "rounds.json").read_text()) for out in (ner_run, tmp_path))):
        for key in ("val/f1", "test/f1", "test/acc", "pseudo/count", "train_size"):
            if key in single:
                assert single[key] == pytest.approx(ddp[key], abs=1e-6), (single["round"], key)


def test_the_precision_gate_reads_entity_precision_on_validation(ner_task, ner_run, tmp_path) -> None:
    """The expected precision of a token selection is the entity precision that the same filters give on
    validation (confident O words alone would read as ~100% right word by word); a gate above it stops the run."""
    expected = json.loads((ner_run / "rounds.json").read_text())[1]["pseudo/expected_precision"]
    assert 0 < expected < 1
    overrides = [o for o in ner_overrides(ner_task, tmp_path) if not o.startswith("selftrain.min_precision")]
    results = pipeline.run(compose_config(overrides + [f"selftrain.min_precision={expected + 1e-3}"]))
    assert results["rounds_run"] == 1 and "entities that the same filters keep on validation" in results["stop_reason"]


def test_masked_lm_on_the_task_text_serves_token_tasks(ner_task, tmp_path) -> None:
    replaced = ("selftrain.max_rounds=", "selftrain.supervised_epochs=")
    overrides = [o for o in ner_overrides(ner_task, tmp_path) if not o.startswith(replaced)]
    results = pipeline.run(compose_config(overrides + [
        "stages=[mlm]", "stages.mlm.max_steps=2", "selftrain.max_rounds=0", "selftrain.supervised_epochs=2"]))
    assert results["rounds_run"] == 1 and (tmp_path / "stages" / "0_mlm" / "COMPLETE").is_file()


# --- using the model -----------------------------------------------------------------------------------------------
def test_a_token_run_exports_to_transformers_and_onnx_with_the_runs_word_predictions(ner_run, ner_task,
                                                                                     tmp_path) -> None:
    """transformers' AutoModelForTokenClassification (and the ONNX graph) read at each word's first subword give
    the run's own test predictions."""
    import argparse

    import onnxruntime
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from alpaca_lightning.inference.export import export

    options = argparse.Namespace(round_index=None, int8=False, overwrite=False)
    folder = export(ner_run, tmp_path / "tagger", "transformers", options)
    onnx_folder = export(ner_run, tmp_path / "onnx", "onnx", options)
    results = json.loads((ner_run / "results.json").read_text())
    expected = np.load(ner_run / "rounds" / f"round_{results['best_round']}" / "predictions.npz")["test"]
    sentences = read_conll_words(ner_task["test"])
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForTokenClassification.from_pretrained(folder).eval()
    session = onnxruntime.InferenceSession(str(onnx_folder / "model.onnx"))
    rows, onnx_rows = [], []
    for words in sentences:
        encoded = tokenizer(words, is_split_into_words=True, truncation=True, max_length=64, return_tensors="pt")
        first = [encoded.word_ids().index(w) for w in range(len(words))]
        with torch.no_grad():
            rows.append(torch.softmax(model(**encoded).logits[0], -1)[first].numpy())
        onnx_probs = session.run(["probabilities"], {k: v.numpy() for k, v in encoded.items()})[0][0]
        onnx_rows.append(onnx_probs[first])
    for probs in (np.concatenate(rows), np.concatenate(onnx_rows)):
        assert (probs.argmax(1) == expected.argmax(1)).all() and np.abs(probs - expected).max() < 1e-4
    assert model.config.id2label[0] == results["label_names"][0]
    # the folder needs neither alpaca_lightning nor trust_remote_code: transformers' pipeline in a fresh venv
    (folder / "sentences.json").write_text(json.dumps(sentences[:5]))
    tagged = without_package("""
        import torch
        from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline
        sentences = json.load(open("sentences.json"))
        tokenizer, model = AutoTokenizer.from_pretrained("."), AutoModelForTokenClassification.from_pretrained(".")
        result = {"tags": [], "pipeline": [len(pipeline("token-classification", model=".",
                                                         aggregation_strategy="first")(" ".join(sentences[0])))]}
        for words in sentences:
            encoded = tokenizer(words, is_split_into_words=True, return_tensors="pt")
            first = [encoded.word_ids().index(w) for w in range(len(words))]
            with torch.no_grad():
                result["tags"] += model(**encoded).logits[0][first].argmax(-1).tolist()
    """, folder, tmp_path)
    assert tagged["tags"] == expected[:len(tagged["tags"])].argmax(1).tolist()


def test_a_token_run_predicts_words_from_python_and_from_files(ner_run, ner_task, tmp_path) -> None:
    """load(...).predict_proba gives one row per word, equal to the run's test predictions; alpaca-predict reads a
    JSONL "tokens" list or a plain text and writes a tag and its probability per word."""
    import alpaca_lightning
    from alpaca_lightning.inference.predict_files import main as predict_main

    results = json.loads((ner_run / "results.json").read_text())
    expected = np.load(ner_run / "rounds" / f"round_{results['best_round']}" / "predictions.npz")["test"]
    sentences = read_conll_words(ner_task["test"])
    clf = alpaca_lightning.load(ner_run)
    per_sentence = clf.predict_proba(sentences)
    assert [len(p) for p in per_sentence] == [len(s) for s in sentences]
    np.testing.assert_allclose(np.concatenate(per_sentence), expected, atol=1e-6)
    tags = clf.predict([" ".join(sentences[0])])[0]  # a text is split at white space
    assert tags == [results["label_names"][i] for i in expected[:len(sentences[0])].argmax(1)]
    source = tmp_path / "sentences.jsonl"
    source.write_text("".join(json.dumps({"id": i, "tokens": words}) + "\n" for i, words in enumerate(sentences)))
    assert predict_main([str(ner_run), str(source), "--chunk-size", "7"]) == 0
    out = pd.read_json(tmp_path / "sentences.predictions.jsonl", lines=True)
    assert list(out["id"]) == list(range(len(sentences)))
    assert [len(t) for t in out["predicted_tags"]] == [len(s) for s in sentences]
    np.testing.assert_allclose(np.concatenate(out["tag_probabilities"].tolist()), expected.max(1), atol=1e-6)
    assert results["use_command"] == f"alpaca-predict {ner_run} sentences.jsonl"


def read_conll_words(path: Path) -> list[list[str]]:
    sentences, words = [], []
    for line in path.read_text().splitlines() + [""]:
        if not line.strip():
            if words:
                sentences.append(words)
            words = []
        elif not line.startswith("-DOCSTART-"):
            words.append(line.split()[0])
    return sentences
