"""alpaca-report: grouping by the config keys that differ, mean ± sample std against hand-computed values, runs
that failed or never finished listed instead of averaged."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from alpaca_lightning import aggregate


def fake_run(folder: Path, task: str, threshold: float, seed: int, test_acc: float | None) -> None:
    folder.mkdir(parents=True)
    config = {"seed": seed, "task": {"name": task}, "filters": {"confidence": {"threshold": threshold}},
              "paths": {"output_dir": str(folder)}, "split": {"labels_per_class": 8}}
    OmegaConf.save(OmegaConf.create(config), folder / "config_resolved.yaml")
    if test_acc is None:
        return
    results = {"best": {"test/acc": test_acc, "val/acc": 0.5}, "supervised_only": {"test/acc": test_acc - 0.1},
               "gain": {"test/acc": 0.1}}
    (folder / "results.json").write_text(json.dumps(results))
    rounds = [{"round": 0, "test/acc": test_acc - 0.1}, {"round": 1, "test/acc": test_acc}]
    (folder / "rounds.json").write_text(json.dumps(rounds))


ACCURACIES = {("a", 0.8): [0.60, 0.70], ("a", 0.9): [0.50, 0.54], ("b", 0.8): [0.80, 0.80], ("b", 0.9): [0.9, 0.7]}


@pytest.fixture
def sweep(tmp_path) -> Path:
    job = 0
    for (task, threshold), values in ACCURACIES.items():
        for seed, value in enumerate(values):
            fake_run(tmp_path / "sweep" / str(job), task, threshold, seed, value)
            job += 1
    fake_run(tmp_path / "sweep" / str(job), "a", 0.8, 2, None)  # killed before results.json
    failed = tmp_path / "sweep" / str(job + 1)
    fake_run(failed, "b", 0.9, 2, None)
    (failed / "error.txt").write_text("Traceback ...\nDataError: the pool is empty\n")
    return tmp_path / "sweep"


def test_groups_by_the_keys_that_differ_with_hand_computed_mean_and_std(sweep, tmp_path) -> None:
    summary = aggregate.report([sweep], tmp_path / "out")
    assert summary["keys"] == ["filters.confidence.threshold", "task.name"]  # not seed, not paths.*
    rows = {row["group"]: row for row in summary["rows"]}
    mean, std = rows[("0.8", "a")]["best:test/acc"]
    assert mean == pytest.approx(0.65) and std == pytest.approx(0.0707107, abs=1e-6)  # stdev([.6, .7])
    assert rows[("0.9", "b")]["best:test/acc"] == pytest.approx((0.8, 0.1414214), abs=1e-6)
    assert rows[("0.8", "b")]["best:test/acc"] == pytest.approx((0.8, 0.0))
    assert all(row["n"] == 2 for row in summary["rows"])  # the unfinished and failed runs are not averaged
    assert len(summary["problems"]) == 2
    text = (tmp_path / "out" / "report.md").read_text()
    assert "| 0.8 | a | 2 | 55.0 ± 7.1 | 65.0 ± 7.1 |" in text
    assert "failed: DataError: the pool is empty" in text and "unfinished (no results.json)" in text
    table = list(csv.DictReader((tmp_path / "out" / "report.csv").open()))
    assert float(table[0]["best:test/acc mean"]) == pytest.approx(0.65)
    assert (tmp_path / "out" / "rounds.png").stat().st_size > 1000


def test_explicit_grouping_and_a_clear_error_for_an_unknown_key(sweep, tmp_path) -> None:
    summary = aggregate.report([sweep], tmp_path / "out", group_by=["task.name"])
    rows = {row["group"]: row for row in summary["rows"]}
    assert rows[("a",)]["n"] == 4 and rows[("a",)]["best:test/acc"][0] == pytest.approx(0.585)
    with pytest.raises(KeyError, match="task.nme"):
        aggregate.report([sweep], tmp_path / "out", group_by=["task.nme"])
    assert aggregate.main([str(tmp_path / "missing")]) == 1


def test_the_cli_prints_the_table(sweep, tmp_path, capsys) -> None:
    assert aggregate.main([str(sweep), "--out", str(tmp_path / "cli"), "--metric", "best:test/acc"]) == 0
    printed = capsys.readouterr().out
    assert "| filters.confidence.threshold | task.name | n | best:test/acc |" in printed


def recipe_run(folder: Path, task: str, lr: float, seed: int, val: float | None, test: float = 0.5) -> None:
    folder.mkdir(parents=True)
    config = {"seed": seed, "task": {"name": task}, "model": {"classifier": {"optimizer": {"lr": lr}}}}
    OmegaConf.save(OmegaConf.create(config), folder / "config_resolved.yaml")
    if val is not None:
        (folder / "results.json").write_text(json.dumps({"best": {"val/acc": val, "test/acc": test}}))


def test_choose_keeps_per_group_the_recipe_best_on_mean_validation(tmp_path) -> None:
    # task a: lr 1e-4 has mean val 0.70 (0.6, 0.8), lr 2e-4 has 0.65 (0.9, 0.4): 1e-4 wins although its best seed
    # is worse. Task b: lr 2e-4 would win on val (0.9) but one of its seeds failed, so 1e-4 is chosen.
    vals = {("a", 1e-4): [0.6, 0.8], ("a", 2e-4): [0.9, 0.4], ("b", 1e-4): [0.5, 0.5], ("b", 2e-4): [0.9, None]}
    for i, ((task, lr), values) in enumerate(vals.items()):
        for seed, val in enumerate(values):
            recipe_run(tmp_path / "runs" / f"{i}_{seed}", task, lr, seed, val, test=0.1 * (i + 1))
    summary = aggregate.report([tmp_path / "runs"], tmp_path / "out", group_by=["task.name"],
                               metrics=["best:test/acc"], choose=["model.classifier.optimizer.lr"])
    assert summary["keys"] == ["task.name", "model.classifier.optimizer.lr"]
    assert [row["group"] for row in summary["rows"]] == [("a", "0.0001"), ("b", "0.0001")]
    rows = {row["group"][0]: row for row in summary["rows"]}
    assert rows["a"]["best:test/acc"] == pytest.approx((0.1, 0.0)) and rows["b"]["best:test/acc"][0] == pytest.approx(0.3)
    choice_b = next(c for c in summary["choices"] if c.group == ("b",))
    assert choice_b.ineligible == [("0.0002",)] and choice_b.scores == {("0.0001",): pytest.approx(0.5)}
    text = (tmp_path / "out" / "report.md").read_text()
    assert "a: chose ('0.0001',) from 0.0001: 70.0; 0.0002: 65.0" in text
    with pytest.raises(ValueError, match="test metric"):
        aggregate.report([tmp_path / "runs"], tmp_path / "out", choose=["model.classifier.optimizer.lr"],
                         choose_on="best:test/acc")


def test_keys_that_another_key_determines_are_left_out(tmp_path) -> None:
    # task.name determines task.label_names and the source path; the threshold varies on its own
    tasks = {"a": (["x", "y"], "/data/a.csv"), "b": (["p", "q", "r"], "/data/b.csv")}
    for i, (task, threshold) in enumerate([("a", 0.8), ("a", 0.9), ("b", 0.8), ("b", 0.9)]):
        folder = tmp_path / "runs" / str(i)
        folder.mkdir(parents=True)
        names, path = tasks[task]
        config = {"seed": 0, "task": {"name": task, "label_names": names, "sources": {"train": {"path": path}}},
                  "filters": {"confidence": {"threshold": threshold}}}
        OmegaConf.save(OmegaConf.create(config), folder / "config_resolved.yaml")
    records = aggregate.find_runs([tmp_path / "runs"])
    assert aggregate.differing_keys(records) == ["filters.confidence.threshold", "task.name"]
    assert aggregate.differing_keys(records, exclude=["task.name"]) == [
        "filters.confidence.threshold", "task.label_names"]  # the next shortest key that tells the tasks apart
