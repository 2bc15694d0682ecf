"""Sentence (and sentence-pair) classification: one example is a text or a text pair, one unit is one example."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from alpaca_lightning.data.splits import UNKNOWN_LABEL, TaskSpec, TaskSplits, TextSplit, build_splits
from alpaca_lightning.selftrain.prediction import Predictions, classification_metrics
from alpaca_lightning.tasks.base import TaskKind

# task config keys that are not TaskSpec fields: read by the teachers, the round loop, the pipeline
NOT_SPEC_KEYS = ("sources", "prompt", "class_prior", "kind")


def task_spec(task_cfg: DictConfig) -> TaskSpec:
    fields = OmegaConf.to_container(task_cfg, resolve=True)
    for key in NOT_SPEC_KEYS:
        fields.pop(key, None)
    sources = {name: instantiate(src) for name, src in task_cfg.sources.items() if src is not None}
    return TaskSpec(sources=sources, **fields)


class SentenceClassification(TaskKind):
    name = "sentence classification"

    def load_splits(self, task_cfg: DictConfig, split_cfg: dict[str, Any], seed: int) -> TaskSplits:
        return build_splits(task_spec(task_cfg), seed=seed, **split_cfg)

    def hide_pool_labels(self, splits: TaskSplits) -> tuple[TaskSplits, np.ndarray]:
        hidden = np.asarray(splits.pool.labels).copy()
        return TaskSplits(splits.label_names, splits.labelled, self.inference_split(splits.pool.texts),
                          splits.validation, splits.test, splits.info), hidden

    def gold(self, splits: TaskSplits, split: str) -> np.ndarray:
        return np.asarray(getattr(splits, split).labels)

    def make_datamodule(self, data: Callable[..., pl.LightningDataModule], splits: TaskSplits, tokenizer: Any,
                        seed: int) -> pl.LightningDataModule:
        return data(splits=splits, tokenizer=tokenizer, seed=seed)

    def make_classifier(self, classifier: Callable[..., pl.LightningModule], **kwargs: Any) -> pl.LightningModule:
        return classifier(**kwargs)

    def score(self, predictions: Predictions, gold: np.ndarray, prefix: str) -> dict[str, Any]:
        return classification_metrics(predictions, gold, prefix)

    def inference_split(self, examples: list) -> TextSplit:
        return TextSplit(list(examples), np.full(len(examples), UNKNOWN_LABEL, dtype=np.int64))
