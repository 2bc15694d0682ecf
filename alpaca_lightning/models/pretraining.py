"""Self-supervised LightningModules on the task's own text: masked LM, and MLM + next-sentence prediction."""

from __future__ import annotations

from typing import Any, Callable

import torch
from transformers import AutoConfig, AutoModelForMaskedLM, BertForPreTraining

from alpaca_lightning.console import quiet_libraries
from alpaca_lightning.errors import AlpacaError
from alpaca_lightning.models.base import TransformerModule


class _SelfSupervisedModule(TransformerModule):
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self.model(**batch)
        loss = self.check_finite(out.loss)
        self.log("pretrain/loss", loss, prog_bar=True, batch_size=batch["input_ids"].shape[0])
        return loss


class MaskedLanguageModel(_SelfSupervisedModule):
    """Masked language modelling (``AutoModelForMaskedLM``); masking happens in the data collator."""

    uses_next_sentence = False

    def __init__(
        self,
        model_path: str,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        weight_decay: float = 0.01,
    ) -> None:
        super().__init__(optimizer, scheduler, weight_decay)
        quiet_libraries()
        self.model = AutoModelForMaskedLM.from_pretrained(model_path)
        self.model.train()


class MaskedLMWithNextSentence(_SelfSupervisedModule):
    """BERT pre-training objective: MLM + next-sentence prediction (``BertForPreTraining``)."""

    uses_next_sentence = True

    def __init__(
        self,
        model_path: str,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        weight_decay: float = 0.01,
    ) -> None:
        super().__init__(optimizer, scheduler, weight_decay)
        quiet_libraries()
        model_type = AutoConfig.from_pretrained(model_path).model_type
        if model_type != "bert":
            raise AlpacaError(
                f"pretrain=mlm_nsp needs a BERT-family encoder (next-sentence head); '{model_path}' is "
                f"'{model_type}'. Use pretrain=mlm for this model."
            )
        self.model = BertForPreTraining.from_pretrained(model_path)
        self.model.train()
