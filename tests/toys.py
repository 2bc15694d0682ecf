"""Toy extensions, one of each kind, defined outside the package: each is one class here plus one YAML file in
tests/conf/<group>/toy.yaml, found through Hydra's search path. tests/test_extension.py runs them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from alpaca_lightning.context import RunContext
from alpaca_lightning.models.losses import Loss
from alpaca_lightning.once import produce_once
from alpaca_lightning.selftrain.filters import PseudoLabelFilter, SelectionContext
from alpaca_lightning.selftrain.plan import TrainingPlan
from alpaca_lightning.selftrain.prediction import Predictions
from alpaca_lightning.selftrain.teachers import TEACHER_SPLITS, Teacher
from alpaca_lightning.stages import Stage


class EvenPositions(PseudoLabelFilter):
    """Keeps pool examples at even positions only."""

    def __call__(self, probs: np.ndarray, keep: np.ndarray, context: SelectionContext) -> np.ndarray:
        return keep & (np.arange(len(probs)) % 2 == 0)


class ConstantTeacher(Teacher):
    """Says class ``label`` with probability ``confidence`` for every example."""

    name = "constant"

    def __init__(self, label: int = 0, confidence: float = 0.9) -> None:
        self.label = label
        self.confidence = confidence

    def predict(self, ctx: RunContext, plan: TrainingPlan, teacher_model: Path) -> dict[str, Predictions]:
        out = {}
        for split in TEACHER_SPLITS:
            classes = len(ctx.label_names)
            probs = np.full((len(getattr(ctx.splits, split)), classes), (1 - self.confidence) / (classes - 1))
            probs[:, self.label] = self.confidence
            out[split] = Predictions(probs)
        return out


class PoolEntropy(Loss):
    """Entropy minimisation on the unlabelled pool; counts the pool batches it sees (in-process runs only)."""

    name = "pool_entropy"
    stream = "pool"
    batches_seen = 0

    def per_example(self, module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        assert "labels" not in batch  # the pool stream never carries labels
        PoolEntropy.batches_seen += 1
        log_probs = torch.log_softmax(module(batch).float(), dim=-1)
        return -(log_probs.exp() * log_probs).sum(-1)


class ZeroEmbeddingRow(Stage):
    """Sets one row of the word embeddings to zero and hands the encoder on."""

    name = "zero_row"

    def __init__(self, row: int = 5) -> None:
        self.row = row

    def run(self, ctx: RunContext, encoder_path: str, folder: Path) -> str:
        from transformers import AutoModel

        def compute():
            model = AutoModel.from_pretrained(encoder_path)
            with torch.no_grad():
                model.get_input_embeddings().weight[self.row] = 0.0
            return model

        def write(model, tmp: Path) -> None:
            model.save_pretrained(tmp)
            ctx.tokenizer.save_pretrained(tmp)

        produce_once(folder, compute, write, f"stage '{self.name}'")
        return str(folder)
