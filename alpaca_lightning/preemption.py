"""Graceful pre-emption: on SIGTERM (a scheduler's notice) or SIGUSR1 (SLURM's ``--signal=USR1@<seconds>``) the
fit in progress saves a mid-epoch checkpoint and the run exits with ``EXIT_PREEMPTED``; the same command with the same
output folder resumes that fit where it stopped, with the same result as an uninterrupted run.

The handlers only note the signal (``alpaca-train`` installs them); the work stops at the next safe place:
    training   after the current step: Lightning's checkpoint (weights, optimizer, scheduler, loop position) plus
               the RNG states go to ``<unit's parent>/.<unit>.resume/<stage>.ckpt`` beside a JSON identity card
    units      before a unit of work starts (``once.produce_once``)
A prediction runs to its end (it is one pass, and it often finishes a unit whose fit is done: stopping there would
throw that fit away), and so does a fit's last step of an epoch (see ``on_train_batch_end``).
A checkpoint is only resumed by the same unit, stage and config (config_sha256); anything else is discarded.
It is deleted when its unit is complete. Mid-epoch resume is exact for fits whose DataModule can skip the
batches already seen (``resumes_mid_epoch``: the rounds and teachers); other fits (pretraining and contrastive
stages) are not checkpointed and restart from their unit's start.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from alpaca_lightning.artifacts import atomic_write_json, read_json
from alpaca_lightning.console import info
from alpaca_lightning.distributed import barrier, is_global_zero
from alpaca_lightning.killpoints import kill_point

# EX_TEMPFAIL of sysexits.h, "temporary failure, try again": a job script requeues on it, e.g.
#   srun alpaca-train ...; [ $? -eq 75 ] && scontrol requeue "$SLURM_JOB_ID"
EXIT_PREEMPTED = 75
PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

_received: int | None = None  # the signal number, once one arrived
_units: list[Path] = []  # the units of work in progress, innermost last


class Preempted(Exception):
    """The run stopped on a pre-emption signal; ``saved`` is the checkpoint written, if any."""

    def __init__(self, message: str, saved: Path | None = None) -> None:
        super().__init__(message)
        self.saved = saved


def install_handlers() -> None:
    """Note SIGTERM/SIGUSR1 instead of dying. Installed before any Trainer exists, so Lightning chains to this
    handler and does not install its own SLURM requeue handler (which would checkpoint to another place)."""
    for signum in PREEMPTION_SIGNALS:
        signal.signal(signum, _note_signal)


def _note_signal(signum: int, frame: Any) -> None:
    global _received
    _received = signum


def received() -> int | None:
    return _received


def signal_name() -> str:
    return signal.Signals(_received).name if _received is not None else "a signal to another process"


def stop_if_received(where: str) -> None:
    """Raise ``Preempted`` at a place where stopping loses nothing finished."""
    if _received is not None:
        raise Preempted(f"pre-empted by {signal_name()} {where}")


@contextlib.contextmanager
def working_on(unit: Path) -> Iterator[None]:
    """Marks ``unit`` (a ``produce_once`` target) as the one a fit inside belongs to."""
    _units.append(Path(unit))
    try:
        yield
    finally:
        _units.pop()


def current_unit() -> Path | None:
    return _units[-1] if _units else None


def resume_dir(unit: Path) -> Path:
    return Path(unit).with_name(f".{Path(unit).name}.resume")


def discard_resume(unit: Path) -> None:
    """A complete unit never resumes: its checkpoints go (a real model's are hundreds of MB)."""
    if is_global_zero():
        shutil.rmtree(resume_dir(unit), ignore_errors=True)


def rng_states() -> dict[str, Any]:
    """Global RNG states (dropout, masking) in types a ``weights_only`` checkpoint load accepts."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    states = {"torch": torch.get_rng_state(), "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos,
                                                          has_gauss, gauss],
              "python": [version, list(py_state), py_gauss]}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    name, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, py_state, py_gauss = states["python"]
    random.setstate((version, tuple(py_state), py_gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class PreemptionCheckpoint(Callback):
    """One per fit (``TrainerFactory.fit``): a kill point per step, the checkpoint on a noted signal, the resume."""

    def __init__(self, stage: str, unit: Path | None, run_key: str) -> None:
        self.stage = stage
        self.identity = {"unit": str(unit), "stage": stage, "config_sha256": run_key}
        self.path = resume_dir(unit) / f"{stage}.ckpt" if unit is not None else None
        self.pending_rng: dict[str, Any] | None = None
        self.pending_skip: tuple[int, int] | None = None  # (epoch, batches of it already trained on)
        self.batches_done = 0

    @property
    def card(self) -> Path:
        return self.path.with_suffix(".json")

    def resume_path(self) -> str | None:
        """The checkpoint to resume from: only one saved by this unit, stage and config."""
        if self.path is None or not self.path.is_file():
            return None
        if self.card.is_file() and read_json(self.card) == self.identity:
            info(f"{self.stage}: resuming mid-stage from {self.path}")
            return str(self.path)
        info(f"{self.stage}: ignoring {self.path} (written by another unit or config, or cut short); starting over")
        if is_global_zero():
            self.path.unlink(missing_ok=True)
            self.card.unlink(missing_ok=True)
        return None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self.pending_rng is not None:  # the states at the end of the step before the interruption
            restore_rng_states(self.pending_rng)
            self.pending_rng = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        kill_point(f"fit {self.identity['unit']} {self.stage} step {trainer.global_step}")
        stop = trainer.strategy.reduce_boolean_decision(_received is not None, all=False)
        # The epoch's last step is left to finish: a checkpoint there would resume into the next epoch after the
        # data loader had already drawn its shuffle seed, which an uninterrupted run draws after the save.
        if not stop or batch_idx + 1 >= trainer.num_training_batches:
            return
        self.batches_done = batch_idx + 1
        self._save(trainer)
        where = f"in {self.stage} at epoch {trainer.current_epoch}, step {trainer.global_step}"
        raise Preempted(f"pre-empted by {signal_name()} {where}; "
                        + (f"saved {self.path}" if self.path else "nothing saved, the stage restarts"), self.path)

    def _save(self, trainer: pl.Trainer) -> None:
        if self.path is None or not getattr(trainer.datamodule, "resumes_mid_epoch", False):
            self.path = None
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        trainer.save_checkpoint(tmp)
        if is_global_zero():
            os.replace(tmp, self.path)
            atomic_write_json(self.card, self.identity)  # last: a checkpoint without its card is not resumed
        barrier()

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint["alpaca_resume"] = {**self.identity, "epoch": trainer.current_epoch,
                                       "batches_done": self.batches_done, "rng": rng_states()}

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        state = checkpoint["alpaca_resume"]
        self.pending_rng = state["rng"]
        self.pending_skip = (state["epoch"], state["batches_done"])
        info(f"{self.stage}: resuming at epoch {state['epoch']} after {state['batches_done']} batches")


def take_resume_skip(trainer: pl.Trainer | None) -> tuple[int, int] | None:
    """For a DataModule's ``train_dataloader``: (epoch, batches to skip) when this fit resumes mid-epoch."""
    for callback in getattr(trainer, "callbacks", None) or []:
        if isinstance(callback, PreemptionCheckpoint) and callback.pending_skip is not None:
            skip, callback.pending_skip = callback.pending_skip, None
            return skip
    return None
