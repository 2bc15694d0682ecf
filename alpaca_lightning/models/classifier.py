"""The downstream sequence classifier (teachers and students of every round are this module).

An encoder (``AutoModel``, from a backbone folder, a pretrain stage, a teacher or a hub name), a feature extractor
(models/features.py: pooling, scalar mix over layers, multi-layer pooling) and a linear head. Mean pooling suits
sentence-transformer encoders such as all-MiniLM-L6-v2, whose CLS pooler was never trained for classification;
``pooling: cls`` gives the classic BERT recipe. models/adaptive.py holds the options that change which encoder
weights train and how fast (layer-wise learning-rate decay, gradual unfreezing, re-initialised top layers, LoRA).

A saved classifier is an encoder folder that ``from_pretrained`` loads (LoRA adapters merged in), plus
``classifier_head.pt``, ``classifier_features.pt`` (the extractor's learned values) and ``classifier_head.json``
(labels, feature settings, parameter counts).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModel

from alpaca_lightning.console import info, log
from alpaca_lightning.errors import AlpacaError
from alpaca_lightning.models import adaptive, embedding_rows
from alpaca_lightning.models.base import ClassifierModule, encoder_inputs
from alpaca_lightning.models.dropout import use_uniform_mask_dropout
from alpaca_lightning.models.embedding_rows import EMBEDDING_UPDATES
from alpaca_lightning.models.features import FeatureExtractor, FeatureSpec
from alpaca_lightning.models.loading import from_pretrained, load_tensors
from alpaca_lightning.models.losses import Loss

HEAD_WEIGHTS = "classifier_head.pt"
FEATURE_WEIGHTS = "classifier_features.pt"
HEAD_CONFIG = "classifier_head.json"


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
        layer_mix: str = "last",
        top_layers: int = 1,
        combine: str = "concat",
        feature_lr_scale: float = 1.0,
        llrd: float | None = None,
        gradual_unfreezing: int | None = None,
        reinit_layers: int = 0,
        lora: dict | None = None,
        embedding_updates: str = "seen",
    ) -> None:
        super().__init__(optimizer, scheduler, weight_decay, global_batch_size, losses)
        self.num_labels = num_labels
        self.model = from_pretrained(AutoModel.from_pretrained, model_path)
        self.num_layers = self.model.config.num_hidden_layers
        self.spec = FeatureSpec(pooling, layer_mix, top_layers, combine)
        if feature_lr_scale <= 0:
            raise AlpacaError(f"model.classifier.feature_lr_scale={feature_lr_scale} must be > 0 (1: the "
                              f"optimizer's learning rate).")
        self.feature_lr_scale = feature_lr_scale
        adaptive.check_options(self.num_layers, llrd, gradual_unfreezing, reinit_layers, lora)
        self.llrd, self.gradual_unfreezing = llrd, gradual_unfreezing
        if embedding_updates not in EMBEDDING_UPDATES:
            raise AlpacaError(f"model.classifier.embedding_updates={embedding_updates!r}: choose one of "
                              f"{list(EMBEDDING_UPDATES)} (seen: train only the word-embedding rows of the fit's "
                              f"tokens; all: every row, as plain AdamW).")
        self.embedding_updates = embedding_updates
        self.model.train()  # from_pretrained returns eval mode; Lightning switches modes per stage itself
        # The head pools hidden states itself; an unused pooler would also make DDP fail (parameters without
        # gradients). It is kept outside the module (a tuple hides it from nn.Module) and saved with the encoder:
        # the NSP teacher loads the probe stage's folder and needs it.
        self._unused_pooler = (self.model.pooler,) if getattr(self.model, "pooler", None) is not None else ()
        if self._unused_pooler:
            self.model.pooler = None
        hidden_size = self.model.config.hidden_size
        self.extractor = FeatureExtractor(self.spec, hidden_size, self.num_layers)
        self.head = new_head(self.spec.output_size(hidden_size), num_labels, dropout)
        use_uniform_mask_dropout(self)
        folder = Path(model_path)
        if reinit_layers and not (folder / HEAD_CONFIG).is_file():
            # Only on a plain encoder: a classifier's folder (probe stage, earlier round) carries the result already.
            adaptive.reinit_top_layers(self.model, reinit_layers, self.num_layers)
        if lora is not None:
            self.model = adaptive.with_lora(self.model, lora)
        self._load_head(folder)
        self.parameter_counts = {
            "trainable_parameters": adaptive.parameter_count(p for p in self.parameters() if p.requires_grad),
            "total_parameters": adaptive.parameter_count(self.parameters()),
        }

    def _load_head(self, folder: Path) -> None:
        """A classifier folder (teacher, ``continue`` init) brings its head; an encoder folder gets a fresh one."""
        if not (folder / HEAD_WEIGHTS).is_file():
            return
        saved = json.loads((folder / HEAD_CONFIG).read_text())
        if saved["num_labels"] != self.num_labels:
            raise AlpacaError(
                f"The classifier in {folder} has {saved['num_labels']} labels but the task has {self.num_labels}."
            )
        saved_spec = FeatureSpec(**{k: saved[k] for k in FeatureSpec().to_dict() if k in saved})
        if saved_spec != self.spec:
            raise AlpacaError(
                f"The classifier in {folder} was trained on features {saved_spec.to_dict()}, but model.classifier "
                f"asks for {self.spec.to_dict()}. Use the same settings, or start from its encoder in a new run."
            )
        self.head.load_state_dict(load_tensors(folder / HEAD_WEIGHTS))
        if (folder / FEATURE_WEIGHTS).is_file():
            self.extractor.load_state_dict(load_tensors(folder / FEATURE_WEIGHTS))

    def save_pretrained(self, folder: Path) -> None:
        embedding_rows.restore_all_rows(self.model)
        encoder = adaptive.plain_encoder(self.model)
        if self._unused_pooler:
            encoder.pooler = self._unused_pooler[0]
        try:
            encoder.save_pretrained(folder)
        finally:
            if self._unused_pooler:
                encoder.pooler = None
        torch.save(self.head.state_dict(), Path(folder) / HEAD_WEIGHTS)
        torch.save(self.extractor.state_dict(), Path(folder) / FEATURE_WEIGHTS)
        record = {"num_labels": self.num_labels, **self.spec.to_dict(), **self.parameter_counts}
        (Path(folder) / HEAD_CONFIG).write_text(json.dumps(record))

    def features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        output = self.model(**encoder_inputs(batch), output_hidden_states=self.spec.reads_all_layers)
        hidden = output.hidden_states if self.spec.reads_all_layers else (output.last_hidden_state,)
        return self.extractor(hidden, batch["attention_mask"])

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.features(batch))

    # --- the adaptive network (models/adaptive.py) ---------------------------------------------------------------
    def lr_scale(self, parameter_name: str) -> float:
        if parameter_name.startswith("extractor."):
            return self.feature_lr_scale
        if self.llrd is None or not parameter_name.startswith("model."):
            return 1.0
        return adaptive.llrd_scale(parameter_name, self.num_layers, self.llrd)

    # --- a fit trains the embedding rows of its own tokens only (models/embedding_rows.py) ----------------------
    def setup(self, stage: str) -> None:
        # Before a checkpoint is restored and before the optimizer and DDP see the parameters.
        datamodule = getattr(self.trainer, "datamodule", None)
        if stage != "fit" or self.embedding_updates != "seen" or not hasattr(datamodule, "training_token_ids"):
            return
        token_ids = torch.tensor(datamodule.training_token_ids(self.streams), dtype=torch.long)
        embedding_rows.train_seen_rows_only(self.model, token_ids)

    def teardown(self, stage: str) -> None:
        if stage == "fit":
            embedding_rows.restore_all_rows(self.model)

    def on_fit_start(self) -> None:
        counts = self.parameter_counts
        info(f"{self.stage_name}: {counts['trainable_parameters']:,} of {counts['total_parameters']:,} parameters "
             f"trainable")
        needed = adaptive.epochs_to_unfreeze_all(self.num_layers, self.gradual_unfreezing or 0)
        if self.gradual_unfreezing and self.trainer.max_epochs < needed:
            log.warning(f"{self.stage_name}: gradual_unfreezing={self.gradual_unfreezing} unfreezes the whole encoder "
                        f"after {needed} epochs, but this fit has {self.trainer.max_epochs}: the lowest layers "
                        f"never train.")

    def on_train_start(self) -> None:
        for logger in self.loggers:
            logger.log_metrics({f"model/{k}": float(v) for k, v in self.parameter_counts.items()}, step=0)

    def on_after_backward(self) -> None:
        if self.gradual_unfreezing:
            adaptive.drop_frozen_gradients(self.model.named_parameters(), self.num_layers, self.current_epoch,
                                           self.gradual_unfreezing)

    def on_train_epoch_end(self) -> None:
        shares = self.extractor.learned_shares()
        if shares:
            self.log_dict({f"features/{name}": value for name, value in shares.items()})


def new_head(hidden_size: int, num_labels: int, dropout: float = 0.0) -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Dropout(dropout), torch.nn.Linear(hidden_size, num_labels))
