"""Round-0 stages for sentence encoders, after SetFit: contrastive pair training on the labelled set, then a
linear probe that gives round 0's classifier a fitted head instead of a random one (LP-FT, Kumar et al., 2022).

    stages=[contrastive,probe]
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from alpaca_lightning.artifacts import atomic_write_json
from alpaca_lightning.console import info
from alpaca_lightning.context import RunContext
from alpaca_lightning.data.batching import GlobalBatchSampler, pad_token_rows
from alpaca_lightning.errors import AlpacaError
from alpaca_lightning.models.classifier import SequenceClassifier
from alpaca_lightning.models.contrastive import SentencePairEncoder
from alpaca_lightning.once import produce_once, train_once
from alpaca_lightning.stages import Stage


def sentence_pairs(labels: np.ndarray, iterations: int, seed: int) -> list[tuple[int, int, float]]:
    """SetFit's pair sampling: per iteration and labelled example, one partner of the same class (target 1) and
    one of another class (target 0). Returns (index a, index b, target)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    pairs = []
    for _ in range(iterations):
        for i, label in enumerate(labels):
            same = np.flatnonzero((labels == label) & (np.arange(len(labels)) != i))
            other = np.flatnonzero(labels != label)
            if len(same):
                pairs.append((i, int(rng.choice(same)), 1.0))
            if len(other):
                pairs.append((i, int(rng.choice(other)), 0.0))
    return pairs


def length_grouped(pairs: list[tuple[int, int, float]], token_ids: list[list[int]], batch_size: int,
                   seed: int) -> list[tuple[int, int, float]]:
    """The pairs in the order of the training batches' sampler (shuffled, then grouped by the longer text of each
    pair): random pairs of texts pad every batch to its longest text, which cost about a third of this stage."""
    lengths = [max(len(token_ids[a]), len(token_ids[b])) for a, b, _ in pairs]
    batches = GlobalBatchSampler(lengths, batch_size, seed=seed, group_by_length=True).global_batches()
    return [pairs[i] for batch in batches for i in batch]


class PairCollator:
    def __init__(self, encoded: list[list[int]], pad_token_id: int) -> None:
        self.encoded = encoded
        self.pad_token_id = pad_token_id

    def side(self, indices: list[int], prefix: str) -> dict[str, torch.Tensor]:
        padded = pad_token_rows([self.encoded[i] for i in indices], self.pad_token_id)
        return {f"{prefix}_{key}": value for key, value in padded.items()}

    def __call__(self, pairs: list[tuple[int, int, float]]) -> dict[str, torch.Tensor]:
        a, b, target = zip(*pairs)
        return {**self.side(list(a), "a"), **self.side(list(b), "b"), "target": torch.tensor(target)}


class ContrastiveStage(Stage):
    def __init__(
        self,
        module: Callable[..., SentencePairEncoder],
        pair_iterations: int = 20,
        batch_size: int = 16,
        max_epochs: int = 1,
        name: str = "contrastive",
    ) -> None:
        self.make_module = module
        self.pair_iterations = pair_iterations
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.name = name

    def run(self, ctx: RunContext, encoder_path: str, folder: Path) -> str:
        def fit(module: SentencePairEncoder) -> None:
            token_ids = ctx.datamodule.token_ids("labelled")
            pairs = length_grouped(
                sentence_pairs(ctx.splits.labelled.labels, self.pair_iterations, ctx.seed), token_ids,
                self.batch_size, ctx.seed,
            )
            info(f"{self.name}: {len(pairs)} sentence pairs from {len(ctx.splits.labelled)} labelled examples")
            collate = PairCollator(token_ids, ctx.tokenizer.pad_token_id)
            # already in (shuffled, length-grouped) batch order; under DDP each rank takes every n-th pair
            loader = DataLoader(pairs, batch_size=self.batch_size, shuffle=False, collate_fn=collate)
            module.stage_name = self.name
            trainer = ctx.trainers.fit(self.name, max_epochs=self.max_epochs, use_distributed_sampler=True)
            trainer.fit(module, train_dataloaders=loader)

        def save(module: SentencePairEncoder, tmp: Path) -> None:
            module.save_pretrained(tmp)
            ctx.tokenizer.save_pretrained(tmp)

        train_once(folder, ctx.seed, lambda: self.make_module(model_path=encoder_path), fit, save, self.name)
        return str(folder)


@torch.no_grad()
def pooled_embeddings(classifier: SequenceClassifier, token_ids: list[list[int]], pad_token_id: int,
                      batch_size: int = 64) -> torch.Tensor:
    """The classifier's own features of each text (its pooling, layer mix and multi-layer settings)."""
    classifier.eval()
    out = []
    for start in range(0, len(token_ids), batch_size):
        out.append(classifier.features(pad_token_rows(token_ids[start : start + batch_size], pad_token_id)))
    return torch.cat(out).float()


def fit_logistic_regression(features: torch.Tensor, labels: torch.Tensor, num_labels: int, c: float,
                            max_iter: int = 500) -> torch.nn.Linear:
    """Multinomial logistic regression, sklearn's objective: sum of cross-entropies + ||W||^2 / (2C)."""
    linear = torch.nn.Linear(features.shape[1], num_labels)
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(linear(features), labels, reduction="sum")
        loss = loss + linear.weight.pow(2).sum() / (2 * c)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return linear


class LinearProbeStage(Stage):
    """Fit a logistic regression on the frozen encoder's pooled embeddings of the labelled set and save it as the
    classifier head beside the encoder: round 0 then fine-tunes from a fitted head (LP-FT). The features are the
    run's classifier's own (``model.classifier``: pooling, layer mix, top layers), and so are the saved extras
    (an attention query, mix weights, re-initialised layers), so round 0 starts exactly where the probe ended."""

    def __init__(self, c: float = 1.0, name: str = "probe", finetune_lr: float | None = None) -> None:
        if finetune_lr is not None and not finetune_lr > 0:
            raise AlpacaError(f"stages.{name}.finetune_lr must be > 0 or null (the model's lr), got {finetune_lr}.")
        self.c = c
        self.name = name
        self.finetune_lr = finetune_lr

    def run(self, ctx: RunContext, encoder_path: str, folder: Path) -> str:
        def compute() -> tuple[SequenceClassifier, dict[str, Any]]:
            classifier = ctx.make_classifier(encoder_path)
            features = pooled_embeddings(classifier, ctx.datamodule.token_ids("labelled"), ctx.tokenizer.pad_token_id)
            labels = torch.as_tensor(ctx.splits.labelled.labels, dtype=torch.long)
            linear = fit_logistic_regression(features, labels, len(ctx.label_names), self.c)
            classifier.head[1].load_state_dict(linear.state_dict())
            train_acc = float((linear(features).argmax(1) == labels).float().mean())
            info(f"{self.name}: logistic regression on {len(labels)} frozen embeddings, train accuracy {train_acc:.3f}")
            return classifier, {"train_acc": train_acc}

        def write(result: tuple[SequenceClassifier, dict[str, Any]], tmp: Path) -> None:
            classifier, metrics = result
            classifier.save_pretrained(tmp)
            ctx.tokenizer.save_pretrained(tmp)
            atomic_write_json(tmp / "stage_metrics.json", metrics)

        produce_once(folder, compute, write, f"stage '{self.name}'")
        return str(folder)
