"""What the MLM, MLM+NSP and classifier LightningModules share: a wrapped transformers model, the optimizer
configuration, a non-finite-loss guard and saving in ``from_pretrained`` format (the encoder hand-over)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.precision import MixedPrecision, Precision
from transformers import AutoConfig

from alpaca_lightning.console import quiet_libraries
from alpaca_lightning.errors import AlpacaError, TrainingError
from alpaca_lightning.models import optim
from alpaca_lightning.models.losses import Loss, Supervised
from alpaca_lightning.models.loading import from_pretrained


class TransformerModule(pl.LightningModule):
    def __init__(
        self,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        weight_decay: float = 0.01,
    ) -> None:
        super().__init__()
        quiet_libraries()  # every module loads a transformers model next: no load reports or progress bars
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.weight_decay = weight_decay
        self.stage_name = "train"  # appears in error messages and logs: "pretrain", "round 2", ...
        self.model: torch.nn.Module

    def configure_optimizers(self) -> dict:
        return optim.configure(
            self, self.optimizer_factory, self.scheduler_factory, self.weight_decay,
            self.trainer.estimated_stepping_batches, str(self.trainer.precision), self.lr_scale,
        )

    def lr_scale(self, parameter_name: str) -> float:
        """The factor on the optimizer's learning rate for one parameter (the classifier's layer-wise decay)."""
        return 1.0

    def configure_gradient_clipping(
        self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Where the gradients are the true ones (full precision, or bf16 without loss scaling), clip them here:
        by norm with ``optim.clip_grad_norm``, by value as Lightning would. Lightning's mixed-precision plugin refuses
        to clip for a fused optimizer, because under fp16 such an optimizer unscales the gradients itself; bf16 has no
        loss scaling. Other plugins (fp16, sharded strategies) clip their own way."""
        plugin = self.trainer.precision_plugin
        true_gradients = type(plugin) is Precision or (isinstance(plugin, MixedPrecision) and plugin.scaler is None)
        if not true_gradients:
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
            return
        if not gradient_clip_val:
            return
        if (gradient_clip_algorithm or "norm") == "norm":
            optim.clip_grad_norm(list(plugin.main_params(optimizer)), float(gradient_clip_val))
        else:
            Precision.clip_gradients(plugin, optimizer, gradient_clip_val, gradient_clip_algorithm)

    def check_finite(self, loss: torch.Tensor) -> torch.Tensor:
        if not torch.isfinite(loss.detach()).all():
            lr = self.trainer.optimizers[0].param_groups[0]["lr"] if self.trainer.optimizers else float("nan")
            raise TrainingError(
                f"train/loss became {loss.item()} in stage '{self.stage_name}' at step {self.global_step} "
                f"(learning rate {lr:.3g}). Lower model.optimizer.lr, set trainer.gradient_clip_val, or use "
                f"hardware.precision=32. Completed stages and rounds are kept on disk; re-run with the same "
                f"output folder to resume after fixing the config."
            )
        return loss

    def save_pretrained(self, folder: Path) -> None:
        """Write a folder that ``from_pretrained`` (and so the next stage) can load."""
        self.model.save_pretrained(folder)



class ClassifierModule(TransformerModule):
    """What every class-scoring module shares (the classifier, the cloze and the NSP teachers): a subclass gives
    ``forward(batch) -> logits``; training and prediction are the same for all of them.

    A training batch is a dict of streams (``{"train": ..., "pool": ...}``, see models/losses.py); the loss is the
    weighted sum of each loss's per-example values over its stream, divided by the *nominal* per-device batch size
    (global batch size / processes). DDP averages gradients over processes, so every step optimises the same global
    objective on 1 or N processes; a full batch of the default loss gives exactly the mean cross-entropy.
    """

    def __init__(
        self,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        weight_decay: float = 0.01,
        global_batch_size: int = 16,
        losses: Sequence[Loss] | None = None,
    ) -> None:
        super().__init__(optimizer, scheduler, weight_decay)
        self.global_batch_size = global_batch_size
        self.losses = list(losses) if losses else [Supervised()]

    @property
    def streams(self) -> list[str]:
        """The data streams this module's losses read; the DataModule serves exactly these."""
        return sorted({loss.stream for loss in self.losses})

    def training_step(self, batch: dict[str, dict[str, torch.Tensor]], batch_idx: int) -> torch.Tensor:
        per_device = self.global_batch_size / self.trainer.world_size
        total = torch.zeros((), device=self.device)
        for loss in self.losses:
            term = loss.per_example(self, batch[loss.stream]).sum() / per_device
            if len(self.losses) > 1:  # one loss: train/loss says it all (each self.log costs per step)
                self.log(f"train/{loss.name}", term.detach(), batch_size=len(batch[loss.stream]["input_ids"]))
            total = total + loss.weight * term
        total = self.check_finite(total)
        self.log("train/loss", total, prog_bar=True, batch_size=len(batch["train"]["input_ids"]))
        return total

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        probs = torch.softmax(self(batch).float(), dim=-1)
        return {"index": batch["index"], "probs": probs}


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of the token states that the attention mask keeps (sentence-transformers' pooling)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def encoder_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The keys a transformers encoder takes; batches also carry index, labels, weights, ..."""
    return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}


def require_next_sentence_head(model_path: str, what: str, fix: str) -> None:
    """Next-sentence prediction exists for the BERT family only; say so before loading anything else."""
    model_type = from_pretrained(AutoConfig.from_pretrained, model_path).model_type
    if model_type != "bert":
        raise AlpacaError(
            f"{what} needs a BERT-family encoder (next-sentence head); '{model_path}' is '{model_type}'. {fix}"
        )
