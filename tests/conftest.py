"""Shared fixtures: a small synthetic sentiment task (no network, no ../shared), one finished tiny run for the tests
that only read a run's outputs, the fixture datasets in tests/fixtures/data, and config composition."""

from __future__ import annotations

import csv
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from alpaca_lightning.assets import REPO_ROOT, register_resolvers

CONF_DIR = str(REPO_ROOT / "conf")
# Made-up rows laid out like ../shared/data (sst2_glue/, agnews/, trec6/, mr/): tests/fixtures/make_data.py
FIXTURE_DATA = Path(__file__).parent / "fixtures" / "data"
LIST_GROUPS = {"filters", "teachers", "losses", "stages"}  # config groups selected as lists: stages=[mlm]
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
register_resolvers()

POSITIVE = ["great", "wonderful", "excellent", "superb", "lovely", "brilliant", "moving", "charming"]
NEGATIVE = ["awful", "terrible", "boring", "dreadful", "poor", "dull", "clumsy", "tedious"]
NOUNS = ["movie", "film", "story", "cast", "plot", "script", "ending", "score"]
FILLER = ["the", "really", "a", "truly", "quite", "this", "was", "is", "so", "very", "and", "its"]


def synthetic_rows(n: int, seed: int) -> list[tuple[str, str]]:
    """Unique short 'reviews' whose label is carried by one sentiment word (learnable by a tiny model)."""
    rng = random.Random(seed)
    rows, seen = [], set()
    while len(rows) < n:
        label = rng.choice(["pos", "neg"])
        words = [rng.choice(FILLER) for _ in range(rng.randint(2, 7))] + [rng.choice(NOUNS)]
        words.insert(rng.randint(0, len(words)), rng.choice(POSITIVE if label == "pos" else NEGATIVE))
        text = " ".join(words) + f" number {len(rows)}."
        if text not in seen:
            seen.add(text)
            rows.append((text, label))
    return rows


def write_csv(path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("text", "label")) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def synthetic_task(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("synthetic")
    rows = synthetic_rows(500, seed=0)
    return {"train": write_csv(folder / "train.csv", rows[:400]), "test": write_csv(folder / "test.csv", rows[400:])}


def tiny_overrides(task: dict[str, Path], out_dir: Path) -> list[str]:
    """A complete tiny-model run: 2 pseudo-label rounds, a few seconds on CPU."""
    return [
        "model=tiny_bert",
        "task=files",
        "task.label_names=[neg,pos]",
        f"task.sources.train.path={task['train']}",
        f"task.sources.test.path={task['test']}",
        "split.labels_per_class=16",
        "split.val_size=60",
        "split.pool_size=200",
        "stages=[]",  # plain round 0; tests/test_stages.py runs the default contrastive and probe stages
        # the classifier alone teaches, as it predicts (tests/test_similarity.py runs the default teachers and fusion)
        "teachers=[classifier]",
        "fusion=mean",
        "calibration=none",
        "teacher_selection=all",  # a test that lists teachers fuses them all
        "filters=[class_balanced]",
        "filters.class_balanced.k=40",
        "selftrain.max_rounds=2",
        "selftrain.min_precision=null",  # the rounds run whatever the tiny model's precision (the gate has its tests)
        "selftrain.patience=5",
        "selftrain.supervised_epochs=8",
        "selftrain.student_epochs=2",
        "schedule.keep_all_models=true",
        "data.batch_size=8",
        "hardware.precision=32-true",  # the same numbers on every machine (auto follows the CPU's bf16 units)
        "logger=csv",
        "trainer.enable_progress_bar=false",
        f"paths.output_dir={out_dir}",
        f"hydra.run.dir={out_dir}",
    ]


@dataclass(frozen=True)
class DataRoot:
    """Where the benchmark datasets are read from, and how many labels per class a smoke run there can draw."""

    name: str  # "fixture": tests/fixtures/data (always there); "shared": ../shared/data (ALPACA_DATA_DIR)
    path: Path
    k: int


def data_root_of(name: str) -> DataRoot:
    if name == "fixture":
        return DataRoot("fixture", FIXTURE_DATA, k=2)  # 12 rows per class in trec6: 2 labelled, 2 for validation
    root = DataRoot("shared", Path(compose_config([]).paths.data_dir), k=8)
    if not root.path.is_dir():
        pytest.skip(f"{root.path} is absent")
    return root


@pytest.fixture(params=["fixture", pytest.param("shared", marks=pytest.mark.slow)])
def data_root(request, monkeypatch) -> DataRoot:
    """Runs a test on the fixture datasets, and on the real ones in ../shared/data where they are (else skipped).
    ALPACA_DATA_DIR points there, so that runs in other processes read the same root."""
    root = data_root_of(request.param)
    monkeypatch.setenv("ALPACA_DATA_DIR", str(root.path))
    return root


@dataclass(frozen=True)
class FinishedRun:
    cfg: DictConfig
    out: Path
    results: dict[str, Any]


@pytest.fixture(scope="session")
def tiny_run_once(synthetic_task, tmp_path_factory) -> FinishedRun:
    """One finished run of ``tiny_overrides`` as they are (3 rounds), shared by the tests that only read a run's
    outputs or compare another run with it. Nothing may write into its folder."""
    from alpaca_lightning.pipeline import run

    out = tmp_path_factory.mktemp("tiny_run_once")
    cfg = compose_config(tiny_overrides(synthetic_task, out))
    return FinishedRun(cfg, out, run(cfg))


# What differs between two folders that ran one config: wall times, and the config's hash (it holds the folder).
VOLATILE = ("wall_time_s", "config_sha256")


def outcome(run_dir: Path) -> dict[str, Any]:
    """A finished run's results.json and rounds.json, without wall times and with its folder written <run>: what
    another run of the same config must reproduce to the last digit."""
    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if k not in VOLATILE}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value.replace(str(run_dir), "<run>") if isinstance(value, str) else value

    return {name: clean(json.loads((run_dir / f"{name}.json").read_text())) for name in ("results", "rounds")}


def probs_for(labels: list[int], confidence: list[float], classes: int = 3) -> np.ndarray:
    """Rows whose top class is ``labels[i]`` with probability ``confidence[i]``, the rest spread evenly."""
    out = np.zeros((len(labels), classes))
    for i, (label, conf) in enumerate(zip(labels, confidence)):
        out[i] = (1 - conf) / (classes - 1)
        out[i, label] = conf
    return out


def compose_config(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    return cfg


@pytest.fixture(autouse=True)
def _offline_wandb(tmp_path, monkeypatch):
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


def set_values(cfg: DictConfig, **values) -> DictConfig:
    with open_dict(cfg):
        for key, value in values.items():
            cfg[key] = value
    return cfg
