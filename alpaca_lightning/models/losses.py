"""Per-example training losses of the classifier modules, each over one data stream that the DataModule serves.

Streams (``SelfTrainingDataModule.STREAMS``):
  train  labelled ∪ the round's pseudo-labelled examples, with ``labels``, ``weights`` and optional soft ``targets``
  pool   the unlabelled pool's texts (no labels), as many batches as ``train`` has; for consistency-style losses

A module sums ``loss.weight * loss.per_example(module, batch[loss.stream])`` over its losses and divides by the
nominal per-device batch size, so the objective is the same on 1 or N processes. Adding a loss means one class
here (or anywhere importable) and one YAML file in conf/losses/.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from alpaca_lightning.models.base import ClassifierModule


class Loss:
    name = "loss"
    stream = "train"

    def __init__(self, weight: float = 1.0) -> None:
        self.weight = weight

    def per_example(self, module: ClassifierModule, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """One loss value per example of ``batch`` (shape: batch size)."""
        raise NotImplementedError


def token_cutoff(attention_mask: torch.Tensor, share: float) -> torch.Tensor:
    """An attention mask with a random ``share`` of the inner tokens off (never the first and last token:
    [CLS]/[SEP] or their equivalents): the texts' own noise, for any tokenizer."""
    lengths = attention_mask.sum(dim=1, keepdim=True)
    position = torch.arange(attention_mask.shape[1], device=attention_mask.device).unsqueeze(0)
    inner = (position > 0) & (position < lengths - 1)
    cut = inner & (torch.rand(attention_mask.shape, device=attention_mask.device) < share)
    return attention_mask.masked_fill(cut, 0)


class Supervised(Loss):
    """Cross-entropy against ``labels``, or against soft ``targets`` (soft pseudo-labels), times ``weights``.
    ``cutoff`` > 0 hides that share of each text's tokens from the student (Noisy Student's input noise: a student
    that sees the teacher's exact inputs can only copy it)."""

    name = "supervised"

    def __init__(self, weight: float = 1.0, cutoff: float = 0.0) -> None:
        super().__init__(weight)
        self.cutoff = cutoff

    def per_example(self, module: ClassifierModule, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.cutoff > 0:
            batch = {**batch, "attention_mask": token_cutoff(batch["attention_mask"], self.cutoff)}
        logits = module(batch).float()
        if "targets" in batch:
            loss = -(batch["targets"].float() * torch.log_softmax(logits, dim=-1)).sum(-1)
        else:
            loss = F.cross_entropy(logits, batch["labels"], reduction="none")
        return loss * batch["weights"].float()


class Consistency(Loss):
    """UDA-style consistency on unlabelled text: the model's sharpened prediction on the clean text (no gradient)
    is the target for its prediction on a noised copy, where a random ``cutoff`` share of the tokens is hidden from
    attention and pooling (token cutoff; works for any tokenizer). Examples whose clean prediction is below
    ``threshold`` confidence contribute nothing (FixMatch's mask)."""

    name = "consistency"
    stream = "pool"

    def __init__(self, weight: float = 1.0, cutoff: float = 0.15, temperature: float = 0.4, threshold: float = 0.8):
        super().__init__(weight)
        self.cutoff = cutoff
        self.temperature = temperature
        self.threshold = threshold

    def per_example(self, module: ClassifierModule, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            clean = torch.softmax(module(batch).float(), dim=-1)
            target = torch.softmax(torch.log(clean.clamp_min(1e-12)) / self.temperature, dim=-1)
            mask = (clean.max(dim=-1).values >= self.threshold).float()
        noised = {**batch, "attention_mask": token_cutoff(batch["attention_mask"], self.cutoff)}
        log_probs = torch.log_softmax(module(noised).float(), dim=-1)
        return -(target * log_probs).sum(-1) * mask
