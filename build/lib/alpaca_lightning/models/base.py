"""What the MLM, MLM+NSP and classifier LightningModules share: a wrapped transformers model, the optimizer
configuration, a non-finite-loss guard and saving in ``from_pretrained`` format (the encoder hand-over)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from alpaca_lightning.errors import TrainingError
from alpaca_lightning.models import optim


class TransformerModule(pl.LightningModule):
    def __init__(
        self,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        weight_decay: float = 0.01,
    ) -> None:
        super().__init__()
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.weight_decay = weight_decay
        self.stage_name = "train"  # appears in error messages and logs: "pretrain", "round 2", ...
        self.model: torch.nn.Module

    def configure_optimizers(self) -> dict:
        return optim.configure(
            self, self.optimizer_factory, self.scheduler_factory, self.weight_decay,
            self.trainer.estimated_stepping_batches,
        )

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

