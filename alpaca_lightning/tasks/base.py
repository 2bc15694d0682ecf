"""The task-kind interface. Sentence (and sentence-pair) classification is ``tasks/sentence.py``; another kind is
one class here-like plus ``task.kind._target_`` in its task YAML."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from omegaconf import DictConfig

from alpaca_lightning.data.splits import TaskSplits
from alpaca_lightning.selftrain.prediction import Predictions
from alpaca_lightning.selftrain.pseudo_labels import LabelUse, PseudoLabelSet


class TaskKind:
    name = "task kind"

    # --- data ------------------------------------------------------------------------------------------------------
    def load_splits(self, task_cfg: DictConfig, split_cfg: dict[str, Any], seed: int) -> TaskSplits:
        """Read the task's sources and draw the few-label splits (labelled, pool, validation, test)."""
        raise NotImplementedError

    def hide_pool_labels(self, splits: TaskSplits) -> tuple[TaskSplits, np.ndarray]:
        """The splits with the pool's gold removed, and the pool's unit gold apart (diagnostics only)."""
        raise NotImplementedError

    def gold(self, splits: TaskSplits, split: str) -> np.ndarray:
        """The gold class of every unit of a split, in prediction-row order (-1 where unknown)."""
        raise NotImplementedError

    def make_datamodule(self, data: Callable[..., pl.LightningDataModule], splits: TaskSplits, tokenizer: Any,
                        seed: int) -> pl.LightningDataModule:
        """Tokenization and batching; ``data`` is the ``data`` config group as a partial."""
        raise NotImplementedError

    # --- model -----------------------------------------------------------------------------------------------------
    def make_classifier(self, classifier: Callable[..., pl.LightningModule], **kwargs: Any) -> pl.LightningModule:
        """The classifier module; ``classifier`` is ``model.classifier`` as a partial."""
        raise NotImplementedError

    def predict(self, module: pl.LightningModule, datamodule: pl.LightningDataModule, split: str,
                make_trainer: Callable[..., pl.Trainer], out_dir: Path) -> Predictions:
        """One class distribution per unit of ``split``, through the one prediction path."""
        raise NotImplementedError

    def score(self, predictions: Predictions, gold: np.ndarray, prefix: str) -> dict[str, Any]:
        """The metrics of unit predictions against unit gold, named ``<prefix>/<metric>``."""
        raise NotImplementedError

    # --- self-training ---------------------------------------------------------------------------------------------
    def training_data(self, datamodule: pl.LightningDataModule, round_index: int, selected: PseudoLabelSet | None,
                      use: LabelUse, labelled_share: float | None) -> pl.LightningDataModule:
        """The data of one round's fit: the labelled set, plus the selected pseudo-labelled units as ``use`` says
        (None: the labelled set alone, round 0)."""
        raise NotImplementedError
