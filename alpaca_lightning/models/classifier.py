"""The downstream sequence classifier (teachers and students of every round are this module).

An encoder (``AutoModel``, from a backbone folder, a pretrain stage, a teacher or a hub name) with a pooled linear
head. Mean pooling suits sentence-transformer encoders such as all-MiniLM-L6-v2, whose CLS pooler was never trained
for classification; ``pooling: cls`` gives the classic BERT recipe. A saved classifier is an encoder folder that
``from_pretrained`` loads, plus ``classifier_head.pt`` and ``classifier_head.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModel

from alpaca_lightning.errors import AlpacaError
from alpaca_lightning.models.base import ClassifierModule, encoder_inputs, mean_pool
from alpaca_lightning.models.losses import Loss
from alpaca_lightning.models.loading import from_pretrained, load_tensors

HEAD_WEIGHTS = "classifier_head.pt"
HEAD_CONFIG = "classifier_head.json"
POOLINGS = ("mean", "cls")


class SequenceClassifier(ClassifierModule):

    def __init__(
        self,
        model_path: str,
        num_labels: int,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        weight_decay: float = 0.01,
        global_batch_size: int = 16,
        pooling: str = "mean",
        dropout: float = 0.1,
        losses: Sequence[Loss] | None = None,
    ) -> None:
        super().__init__(optimizer, scheduler, weight_decay, global_batch_size, losses)
        if pooling not in POOLINGS:
            raise AlpacaError(f"model.classifier.pooling must be one of {POOLINGS}, got '{pooling}'.")
        self.num_labels = num_labels
        self.pooling = pooling
        self.model = from_pretrained(AutoModel.from_pretrained, model_path)
        self.model.train()  # from_pretrained returns eval mode; Lightning switches modes per stage itself
        if getattr(self.model, "pooler", None) is not None:
            # The head pools hidden states itself; an unused pooler would also make DDP fail (parameters without
            # gradients).
            self.model.pooler = None
        self.head = new_head(self.model.config.hidden_size, num_labels, dropout)
        self._load_head(Path(model_path))

    def _load_head(self, folder: Path) -> None:
        """A classifier folder (teacher, ``continue`` init) brings its head; an encoder folder gets a fresh one."""
        if not (folder / HEAD_WEIGHTS).is_file():
            return
        saved = json.loads((folder / HEAD_CONFIG).read_text())
        if saved["num_labels"] != self.num_labels:
            raise AlpacaError(
                f"The classifier in {folder} has {saved['num_labels']} labels but the task has {self.num_labels}."
            )
        self.head.load_state_dict(load_tensors(folder / HEAD_WEIGHTS))

    def save_pretrained(self, folder: Path) -> None:
        self.model.save_pretrained(folder)
        save_head(folder, self.head, self.num_labels, self.pooling)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.model(**encoder_inputs(batch)).last_hidden_state
        pooled = hidden[:, 0] if self.pooling == "cls" else mean_pool(hidden, batch["attention_mask"])
        return self.head(pooled)


def save_head(folder: Path, head: torch.nn.Module, num_labels: int, pooling: str) -> None:
    """The head beside an encoder folder; a SequenceClassifier built from that folder starts from it."""
    torch.save(head.state_dict(), Path(folder) / HEAD_WEIGHTS)
    (Path(folder) / HEAD_CONFIG).write_text(json.dumps({"num_labels": num_labels, "pooling": pooling}))


def new_head(hidden_size: int, num_labels: int, dropout: float = 0.0) -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Dropout(dropout), torch.nn.Linear(hidden_size, num_labels))
