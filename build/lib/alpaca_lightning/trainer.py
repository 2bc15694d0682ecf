"""Builds the Lightning Trainers of a run: one per stage and per round, all with the run's hardware settings.

A fresh Trainer per round is deliberate: Lightning sets up the train dataloader before ``on_train_epoch_start``,
so a round's new pseudo-labels are installed between fits, and each student gets a fresh optimizer and schedule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import Logger


class TrainerFactory:
    def __init__(
        self,
        hardware: dict[str, Any],
        trainer_kwargs: dict[str, Any],
        make_loggers: Callable[[str], list[Logger]],
        run_dir: Path,
    ) -> None:
        self.hardware = dict(hardware)
        self.trainer_kwargs = dict(trainer_kwargs)
        self.make_loggers = make_loggers
        self.run_dir = Path(run_dir)

    def _build(self, callbacks: Sequence[Callback], logger: Any, **overrides: Any) -> pl.Trainer:
        kwargs = {
            **self.hardware,
            **self.trainer_kwargs,
            "default_root_dir": str(self.run_dir),
            "callbacks": list(callbacks),
            "logger": logger,
            # Checkpoints are the rounds' from_pretrained folders, written by the round loop; validation runs
            # through the shared prediction path after each fit, without the sampler's padding duplicates.
            "enable_checkpointing": False,
            "limit_val_batches": 0,
            "num_sanity_val_steps": 0,
            "enable_model_summary": False,
            **overrides,
        }
        return pl.Trainer(**kwargs)

    def fit(
        self, stage: str, max_epochs: int, max_steps: int = -1, use_distributed_sampler: bool = False,
        callbacks: Sequence[Callback] = (),
    ) -> pl.Trainer:
        """A Trainer for one training stage. Our samplers shard by rank themselves (same global batches on
        1 or N processes), hence ``use_distributed_sampler=False`` except for pretraining."""
        return self._build(
            callbacks, self.make_loggers(stage) or False, max_epochs=max_epochs, max_steps=max_steps,
            use_distributed_sampler=use_distributed_sampler,
        )

    def predict(self, callbacks: Sequence[Callback] = ()) -> pl.Trainer:
        return self._build(callbacks, False, use_distributed_sampler=False)
