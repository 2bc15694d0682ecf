"""The self-supervised LightningModule on the task's own text: masked LM, optionally with next-sentence prediction.

``next_sentence=false`` wraps ``AutoModelForMaskedLM`` (any MLM encoder); ``next_sentence=true`` wraps
``BertForPreTraining`` (MLM + NSP, BERT family). Masking happens in the data collator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from transformers import AutoModelForMaskedLM, BertForPreTraining

from alpaca_lightning.models.base import TransformerModule, require_next_sentence_head
from alpaca_lightning.models.loading import from_pretrained


class SelfSupervisedModule(TransformerModule):
    def __init__(
        self,
        model_path: str,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        weight_decay: float = 0.01,
        next_sentence: bool = False,
    ) -> None:
        super().__init__(optimizer, scheduler, weight_decay)
        self.uses_next_sentence = next_sentence
        if next_sentence:
            require_next_sentence_head(model_path, "stages=[mlm_nsp]", "Use stages=[mlm] for this model.")
            self.model = from_pretrained(BertForPreTraining.from_pretrained, model_path)
        else:
            self.model = from_pretrained(AutoModelForMaskedLM.from_pretrained, model_path)
        self.model.train()  # from_pretrained returns eval mode

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.check_finite(self.model(**batch).loss)
        self.log("pretrain/loss", loss, prog_bar=True, batch_size=batch["input_ids"].shape[0])
        return loss
