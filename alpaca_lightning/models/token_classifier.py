"""The token classifier: the sequence classifier's encoder, options and saving, with a tag score per word.

Each word is read at its first subword (the data module says where), so a batch's logits are one row per scored
word, and the losses, calibration, fusion and filters see words as they see sentences elsewhere.
"""

from __future__ import annotations

from typing import Any

import torch

from alpaca_lightning.errors import AlpacaError
from alpaca_lightning.models.base import encoder_inputs
from alpaca_lightning.models.classifier import SequenceClassifier


class TokenClassifier(SequenceClassifier):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.spec.reads_all_layers or self.spec.pooling not in ("mean", "cls"):
            raise AlpacaError(
                f"model.classifier feature settings {self.spec.to_dict()} pool a sentence; a token task reads each "
                f"word's last-layer state. Use model.classifier.layer_mix=last (and pooling mean or cls, which "
                f"do not apply to words)."
            )

    def features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.model(**encoder_inputs(batch)).last_hidden_state
        return hidden[batch["word_rows"], batch["word_cols"]]
