"""What every stage, teacher and round of a run shares, built once by the pipeline.

The pool's gold labels are not here: ``splits.pool.labels`` are all unknown (-1). The pipeline hands the hidden
labels to the round loop's diagnostics only (``HiddenPoolLabels``), so no teacher, stage, loss or DataModule can
train on them, by construction rather than by convention.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerBase

from alpaca_lightning.data.datamodule import SelfTrainingDataModule
from alpaca_lightning.data.splits import UNKNOWN_LABEL, TaskSplits, TextSplit
from alpaca_lightning.models.base import ClassifierModule
from alpaca_lightning.trainer import TrainerFactory


@dataclass(frozen=True)
class HiddenPoolLabels:
    """The pool's gold labels (-1 where unknown), for pseudo-label diagnostics only."""

    labels: np.ndarray


def hide_pool_labels(splits: TaskSplits) -> tuple[TaskSplits, HiddenPoolLabels]:
    hidden = HiddenPoolLabels(np.asarray(splits.pool.labels).copy())
    unknown = np.full(len(splits.pool), UNKNOWN_LABEL, dtype=np.int64)
    return replace(splits, pool=TextSplit(splits.pool.texts, unknown)), hidden


def task_text(splits: TaskSplits) -> list[str]:
    """The task's own text, labelled + pool (pairs joined): what self-supervised stages and tokenizers learn from."""
    return [t if isinstance(t, str) else " ".join(t) for t in splits.labelled.texts + splits.pool.texts]


@dataclass(frozen=True)
class RunContext:
    """The services of a run and its read-only inputs. What changes over a run lives elsewhere: the encoder and the
    learning rates in the ``TrainingPlan`` (resolved once, after the round-0 stages), a round's training data in
    the datamodule handed to that round's fit."""

    kind: Any  # the task kind (alpaca_lightning.tasks): the shape of an example and of a prediction
    splits: TaskSplits  # pool labels hidden
    datamodule: SelfTrainingDataModule  # the task's encoded splits for prediction, with the labelled set to train on
    make_datamodule: Callable[[TaskSplits], SelfTrainingDataModule]
    make_classifier: Callable[..., ClassifierModule]  # (model path, lr=None: the model's optimizer lr)
    trainers: TrainerFactory
    tokenizer: PreTrainedTokenizerBase
    backbone_path: str  # the pretrained encoder, before any round-0 stage
    run_dir: Path
    seed: int
    global_batch_size: int
    prompt: dict[str, Any] | None = None
    class_prior: np.ndarray | None = None  # task.class_prior; None: estimated from the teacher on the pool

    @property
    def label_names(self) -> list[str]:
        return self.splits.label_names

    def own_text(self) -> list[str]:
        return task_text(self.splits)
