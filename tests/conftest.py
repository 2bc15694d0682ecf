"""Shared fixtures: a small synthetic sentiment task (no network, no ../shared) and config composition."""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from alpaca_lightning.assets import REPO_ROOT, register_resolvers

CONF_DIR = str(REPO_ROOT / "conf")
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
