"""Builds the Lightning Trainers of a run: one per stage and per round, all with the run's hardware settings.

A fresh Trainer per round is deliberate: Lightning sets up the train dataloader before ``on_train_epoch_start``,
so a round's new pseudo-labels are installed between fits, and each student gets a fresh optimizer and schedule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import Logger

from alpaca_lightning.console import ThrottledProgressBar
from alpaca_lightning.precision import PrecisionPlan, PredictionDtype
from alpaca_lightning.preemption import PreemptionCheckpoint, current_unit

# `trainer.deterministic: true` also makes torch fill every new tensor with NaN, which costs ~8% of prediction.
# Our kernels never read uninitialised memory, so results are identical without it (tests/test_speed.py checks).
FILL_UNINITIALIZED_MEMORY = False


class TrainerFactory:
    def __init__(
        self,
        hardware: dict[str, Any],
        trainer_kwargs: dict[str, Any],
        make_loggers: Callable[[str], list[Logger]],
        run_dir: Path,
        precision: PrecisionPlan,
        run_key: str = "",
    ) -> None:
        self.run_key = run_key  # the run's config_sha256: a mid-stage checkpoint resumes under the same config only
        self.precision = precision  # the run's plan_precision(...): hardware.precision may say "auto"
        # cpu_threads is set once per process by the pipeline; it is not a Trainer argument
        self.hardware = {**{k: v for k, v in hardware.items() if k != "cpu_threads"}, "precision": self.precision.train}
        self.trainer_kwargs = dict(trainer_kwargs)
        self.make_loggers = make_loggers
        self.run_dir = Path(run_dir)
        torch.utils.deterministic.fill_uninitialized_memory = FILL_UNINITIALIZED_MEMORY

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
        if kwargs.get("enable_progress_bar", True):
            kwargs["callbacks"].append(ThrottledProgressBar())
        return pl.Trainer(**kwargs)

    def fit(
        self, stage: str, max_epochs: int, max_steps: int = -1, use_distributed_sampler: bool = False,
        callbacks: Sequence[Callback] = (),
    ) -> pl.Trainer:
        """A Trainer for one training stage. Our samplers shard by rank themselves (same global batches on
        1 or N processes), hence ``use_distributed_sampler=False`` except for pretraining. The Trainer resumes a
        checkpoint that a pre-emption left for this stage of the current unit of work (``preemption``)."""
        preemption = PreemptionCheckpoint(stage, current_unit(), self.run_key)
        trainer = self._build(
            [*callbacks, preemption], self.make_loggers(stage) or False, max_epochs=max_epochs,
            max_steps=max_steps, use_distributed_sampler=use_distributed_sampler,
        )
        trainer.ckpt_path = preemption.resume_path()
        return trainer

    def predict(self, callbacks: Sequence[Callback] = ()) -> pl.Trainer:
        """A Trainer for one ``predict``: the model is cast to the plan's prediction dtype (a cast model is faster
        than autocast), so no mixed-precision plugin runs on top of it."""
        if self.precision.predict_dtype == "float32":
            return self._build(callbacks, False, use_distributed_sampler=False)
        return self._build(
            [*callbacks, PredictionDtype(self.precision.predict_dtype)], False, use_distributed_sampler=False,
            precision="32-true",
        )
