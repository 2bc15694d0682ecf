"""The tiny-model run end to end: artifacts, pseudo-label indices, results, determinism, resume, errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from alpaca_lightning.artifacts import is_complete
from alpaca_lightning.errors import DataError, TrainingError
from alpaca_lightning.pipeline import load_splits, run
from alpaca_lightning.selftrain.prediction import merge_shards
from tests.conftest import compose_config, synthetic_rows, tiny_overrides, write_csv


@pytest.fixture(scope="module")
def tiny_run(synthetic_task, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_run")
    cfg = compose_config(tiny_overrides(synthetic_task, out))
    results = run(cfg)
    return cfg, out, results


def test_run_writes_every_artifact(tiny_run) -> None:
    cfg, out, results = tiny_run
    for name in ("config_resolved.yaml", "run_info.json", "rounds.csv", "rounds.json", "results.json"):
        assert (out / name).is_file(), name
    info = json.loads((out / "run_info.json").read_text())
    assert info["seed"] == 0 and info["versions"]["torch"] and "commit" in info["git"]
    for k in range(3):
        folder = out / "rounds" / f"round_{k}"
        assert is_complete(folder) and (folder / "metrics.json").is_file()
        assert is_complete(folder / "model")
    assert (out / "logs" / "round_0" / "metrics.csv").is_file()
    assert "round/val/acc" in (out / "logs" / "rounds" / "metrics.csv").read_text()


def test_results_json_fields(tiny_run) -> None:
    _, out, results = tiny_run
    saved = json.loads((out / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    for key in ("supervised_only", "best", "gain", "best_round", "rounds_run", "stop_reason", "best_model"):
        assert key in saved
    for section in ("supervised_only", "best"):
        assert {"val/acc", "val/f1_macro", "test/acc", "test/f1_macro"} <= set(saved[section])
    rounds = json.loads((out / "rounds.json").read_text())
    assert saved["rounds_run"] == len(rounds) == 3
    assert saved["supervised_only"]["test/acc"] == rounds[0]["test/acc"]
    best = [r for r in rounds if r["best"]]
    # schedule=last (the default): the reported round is the last that ran, whatever validation says of it
    assert len(best) == 1 and best[0]["round"] == saved["best_round"] == rounds[-1]["round"]
    assert saved["select_round"] == "last"
    assert saved["best"]["test/acc"] == rounds[-1]["test/acc"]
    assert saved["gain"]["test/acc"] == pytest.approx(rounds[-1]["test/acc"] - rounds[0]["test/acc"])


def test_pseudo_labels_sit_at_the_right_pool_indices(tiny_run) -> None:
    cfg, out, _ = tiny_run
    splits = load_splits(cfg)
    for k in (1, 2):
        folder = out / "rounds" / f"round_{k}"
        table = pd.read_csv(folder / "pseudo_labels.csv")
        teacher_round = json.loads((folder / "metrics.json").read_text())["teacher_round"]
        predictions = out / "rounds" / f"round_{teacher_round}" / "teacher_predictions"  # made once per teacher
        teacher = merge_shards(predictions / ".pool.shards", world_size=1, expected_size=len(splits.pool))
        np.testing.assert_array_equal(np.load(predictions / "pool" / "probs.npy"), teacher.probs)
        index = table["index"].to_numpy()
        assert len(np.unique(index)) == len(index) > 0
        np.testing.assert_array_equal(table["gold"].to_numpy(), splits.pool.labels[index])
        np.testing.assert_array_equal(table["label"].to_numpy(), teacher.labels[index])
        np.testing.assert_allclose(table["confidence"].to_numpy(), teacher.confidence[index], rtol=1e-5)
        np.testing.assert_allclose(table[["prob_neg", "prob_pos"]].to_numpy(), teacher.probs[index], rtol=1e-5)
        assert np.bincount(table["label"], minlength=2).max() <= 40  # filters.class_balanced.k
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["pseudo/count"] == len(table)
        assert metrics["pseudo/acc"] == pytest.approx((table["label"] == table["gold"]).mean())
        assert metrics["train_size"] == len(table) + len(splits.labelled)


def test_pool_holds_no_labelled_or_validation_example(tiny_run) -> None:
    cfg, _, _ = tiny_run
    splits = load_splits(cfg)
    pool = set(splits.pool.texts)
    assert not pool & set(splits.labelled.texts)
    assert not pool & set(splits.validation.texts)
    assert not pool & set(splits.test.texts)


def test_same_seed_gives_identical_metrics(tiny_run, synthetic_task, tmp_path) -> None:
    _, _, first = tiny_run
    second = run(compose_config(tiny_overrides(synthetic_task, tmp_path)))
    assert second["supervised_only"] == first["supervised_only"]
    assert second["best"] == first["best"]
    a = pd.read_csv(tiny_run[1] / "rounds" / "round_1" / "pseudo_labels.csv")
    b = pd.read_csv(tmp_path / "rounds" / "round_1" / "pseudo_labels.csv")
    pd.testing.assert_frame_equal(a, b)


def test_rerun_resumes_completed_rounds(synthetic_task, tmp_path) -> None:
    overrides = tiny_overrides(synthetic_task, tmp_path)
    first = run(compose_config(overrides))
    round2 = tmp_path / "rounds" / "round_2"
    stamp = (round2 / "metrics.json").stat().st_mtime_ns
    # An interrupted round: its folder exists but has no COMPLETE marker, so it must be redone, not trusted.
    # results.json is written last, so a run cut in round 2 has none (else the run counts as finished).
    (round2 / "COMPLETE").unlink()
    (tmp_path / "results.json").unlink()
    second = run(compose_config(overrides))
    assert (round2 / "metrics.json").stat().st_mtime_ns != stamp
    assert second["best"] == first["best"]
    round1 = tmp_path / "rounds" / "round_1" / "metrics.json"
    stamp1 = round1.stat().st_mtime_ns
    run(compose_config(overrides))
    assert round1.stat().st_mtime_ns == stamp1  # complete rounds are skipped


def test_nan_loss_stops_with_a_clear_error(synthetic_task, tmp_path) -> None:
    cfg = compose_config(tiny_overrides(synthetic_task, tmp_path) + ["model.classifier.optimizer.lr=1e30"])
    with pytest.raises(TrainingError, match=r"train/loss became (nan|inf).*model\.optimizer\.lr"):
        run(cfg)
    assert not (tmp_path / "rounds" / "round_0" / "COMPLETE").exists()


def test_empty_pool_is_an_error(tmp_path) -> None:
    rows = [(f"good film {i}", "pos") for i in range(15)] + [(f"bad film {i}", "neg") for i in range(15)]
    train = write_csv(tmp_path / "train.csv", rows)
    overrides = tiny_overrides({"train": train, "test": train}, tmp_path / "out")
    cfg = compose_config(overrides + ["split.labels_per_class=10", "split.val_per_class=5", "split.val_size=null"])
    with pytest.raises(DataError, match=r"unlabelled pool .* is empty.*max_rounds=0"):
        run(cfg)


def test_supervised_only_run_needs_no_pool(tmp_path) -> None:
    rows = synthetic_rows(100, seed=2)
    train = write_csv(tmp_path / "train.csv", rows)
    overrides = tiny_overrides({"train": train, "test": train}, tmp_path / "out")
    results = run(compose_config(overrides + ["split.labels_per_class=null", "selftrain.max_rounds=0"]))
    assert results["rounds_run"] == 1 and results["best_round"] == 0
    assert results["splits"]["labelled"] == 100 - 60  # everything but validation is labelled


def test_unset_mandatory_values_are_listed(tmp_path) -> None:
    from alpaca_lightning.errors import AlpacaError

    cfg = compose_config(["task=files", "model=tiny_bert", f"paths.output_dir={tmp_path}"])
    with pytest.raises(AlpacaError, match=r"\['task.label_names', 'task.sources.test.path', 'task.sources.train.path'\]"):
        run(cfg)


def test_a_teacher_predicts_once_and_is_then_reused(tmp_path) -> None:
    from alpaca_lightning.artifacts import mark_complete
    from alpaca_lightning.selftrain.prediction import predict_split_once

    saved = np.array([[0.2, 0.8], [0.9, 0.1]], dtype=np.float32)
    np.save(tmp_path / "probs.npy", saved)

    def must_not_build():
        raise AssertionError("the teacher was rebuilt although its predictions were saved")

    with pytest.raises(AssertionError, match="rebuilt"):  # no COMPLETE marker: a possibly partial file, not trusted
        predict_split_once(must_not_build, None, "pool", None, tmp_path)
    mark_complete(tmp_path)
    again = predict_split_once(must_not_build, None, "pool", None, tmp_path)
    np.testing.assert_array_equal(again.probs, saved)
