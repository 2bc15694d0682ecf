"""SetFit's body training as a LightningModule: two texts go through the encoder, their mean-pooled embeddings'
cosine similarity is regressed onto 1 (same class) or 0 (different classes). A few labels give many pairs, and the
embedding space moves toward the task before any classifier head exists (Tunstall et al., 2022)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AutoModel

from alpaca_lightning.models.base import TransformerModule, mean_pool
from alpaca_lightning.models.loading import from_pretrained


class SentencePairEncoder(TransformerModule):
    def __init__(
        self,
        model_path: str,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        weight_decay: float = 0.01,
    ) -> None:
        super().__init__(optimizer, scheduler, weight_decay)
        self.model = from_pretrained(AutoModel.from_pretrained, model_path)
        self.model.train()
        if getattr(self.model, "pooler", None) is not None:
            self.model.pooler = None  # unused: it would have no gradient under DDP

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return mean_pool(hidden, attention_mask)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        a = self.embed(batch["a_input_ids"], batch["a_attention_mask"])
        b = self.embed(batch["b_input_ids"], batch["b_attention_mask"])
        similarity = F.cosine_similarity(a.float(), b.float(), dim=-1)
        loss = self.check_finite(F.mse_loss(similarity, batch["target"].float()))
        self.log("contrastive/loss", loss, prog_bar=True, batch_size=len(similarity))
        return loss
