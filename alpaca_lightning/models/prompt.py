"""Prompt-based teachers: they score classes with the self-supervised heads instead of a new classifier head.

ClozeClassifier     (PET / LM-BFF) the text goes through a pattern with a mask slot; a class's score is the MLM
                    head's logit of that class's verbalizer word at the mask.
NextSentenceScorer  (NSP-BERT) the text is paired with a label sentence; the NSP head says whether the label
                    sentence follows. The teacher turns the is-next probabilities of all label sentences into class
                    scores (selftrain/teachers.py); this module only scores pairs.

Both are fine-tuned on the labelled set through their prompts. A backbone without pretrained heads (the pip-installed
all-MiniLM-L6-v2 has none) starts them fresh; ``stages=[mlm]`` / ``stages=[mlm_nsp]`` trains them on the task's
text first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from transformers import AutoModelForMaskedLM, BertForNextSentencePrediction

from alpaca_lightning.console import info
from alpaca_lightning.errors import AlpacaError
from alpaca_lightning.models.base import ClassifierModule, encoder_inputs, require_next_sentence_head
from alpaca_lightning.models.loading import from_pretrained

IS_NEXT = 0  # transformers' NSP convention: label 0 means "sentence B continues sentence A"


def _load_with_report(load: Callable[..., Any], model_path: str, what: str) -> Any:
    """Load a model and say so when its self-supervised head had to start untrained."""
    model, loading = from_pretrained(load, model_path, output_loading_info=True)
    fresh = [k for k in loading.get("missing_keys", []) if k.startswith("cls.") or "lm_head" in k]
    if fresh:
        info(
            f"{what}: '{model_path}' has no pretrained head ({len(fresh)} weights start fresh); it is trained on the "
            f"labelled set through the prompt. stages=[mlm] or stages=[mlm_nsp] trains it on the task text first."
        )
    return model


class ClozeClassifier(ClassifierModule):
    def __init__(
        self,
        model_path: str,
        verbalizer_token_ids: list[int],
        mask_token_id: int,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        weight_decay: float = 0.01,
        global_batch_size: int = 16,
    ) -> None:
        super().__init__(optimizer, scheduler, weight_decay, global_batch_size)
        self.model = _load_with_report(AutoModelForMaskedLM.from_pretrained, model_path, "cloze teacher")
        self.model.train()
        self.register_buffer("verbalizer_ids", torch.as_tensor(verbalizer_token_ids, dtype=torch.long))
        self.mask_token_id = mask_token_id

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        is_mask = batch["input_ids"] == self.mask_token_id
        if not bool((is_mask.sum(1) == 1).all()):
            raise AlpacaError(
                "cloze teacher: every prompted text needs exactly one mask token after truncation; shorten the "
                "pattern (task.prompt.pattern) or raise data.max_length."
            )
        hidden = self.model.base_model(**encoder_inputs(batch)).last_hidden_state
        # The mask position's state by a masked sum (no index_put in backward: deterministic on GPU too). Only it
        # goes through the vocabulary projection: (batch, vocab), not (batch, length, vocab).
        hidden = (hidden * is_mask.unsqueeze(-1).to(hidden.dtype)).sum(dim=1)
        return self._mlm_head(hidden)[:, self.verbalizer_ids]

    def _mlm_head(self, hidden: torch.Tensor) -> torch.Tensor:
        for name in ("cls", "lm_head"):  # BERT family, RoBERTa family
            head = getattr(self.model, name, None)
            if head is not None:
                return head(hidden)
        raise AlpacaError(
            f"cloze teacher: no MLM head found on {type(self.model).__name__} (expected the BERT or RoBERTa family)."
        )


class NextSentenceScorer(ClassifierModule):
    """Two outputs per (text, label sentence) pair: [is next, not next]."""

    def __init__(
        self,
        model_path: str,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        weight_decay: float = 0.01,
        global_batch_size: int = 16,
    ) -> None:
        super().__init__(optimizer, scheduler, weight_decay, global_batch_size)
        require_next_sentence_head(model_path, "The NSP teacher", "Drop 'nsp' from teachers=[...] for this model.")
        self.model = _load_with_report(BertForNextSentencePrediction.from_pretrained, model_path, "NSP teacher")
        self.model.train()

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(**encoder_inputs(batch)).logits
