"""Console output: our progress messages (rank zero only), and silence for library chatter a user can't act on."""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any

import pytorch_lightning as pl
import transformers
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.utilities.rank_zero import rank_zero_only

log = logging.getLogger("alpaca_lightning")

_LIGHTNING_NOISE = (
    "GPU available", "TPU available", "HPU available", "💡 Tip", "LOCAL_RANK:", "Loading `train_dataloader`"
)
_WARNING_NOISE = (
    r".*isinstance\(treespec, LeafSpec\).*",
    r".*is smaller than the logging interval.*",
    r".*custom batch sampler .* for prediction.*",
    r".*does not have many workers.*",
    r".*`max_epochs` was not set.*",
    r".*`is_gradient_checkpointing` is deprecated.*",  # peft 0.21 asks transformers 5 (LoRA)
    # Only fits whose sampler skips the batches already seen are checkpointed mid-epoch (preemption.py).
    r".*ended before the epoch ended and your dataloader is not resumable.*",
)


@rank_zero_only
def info(message: str) -> None:
    log.info(message)


@rank_zero_only
def warn(message: str) -> None:
    log.warning(message)


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(_LIGHTNING_NOISE)


def quiet_libraries() -> None:
    """Hide transformers' load reports and Lightning's hardware banners; keep real warnings."""
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero",
                 "pytorch_lightning.accelerators.cuda"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise())
    for pattern in _WARNING_NOISE:
        warnings.filterwarnings("ignore", message=pattern)


class ThrottledProgressBar(RichProgressBar):
    """Lightning's rich bar, redrawn at most every ``interval`` seconds, on the main thread. The stock bar redraws
    and re-reads the logged metrics after every batch, about 9% of a small model's training step on a CPU, and
    its refresh thread wakes 100 times a second beside the compute threads (2 on a 2-core machine), so
    the throttled hooks below draw instead. A slower thread would not do: Lightning's thread sleeps between
    wake-ups, so stopping the bar at the end of every fit and prediction would wait that long."""

    def __init__(self, interval: float = 0.5) -> None:
        super().__init__()
        self.interval = interval
        self._last_draw = 0.0

    def _init_progress(self, trainer: pl.Trainer) -> None:
        super()._init_progress(trainer)
        live = getattr(self.progress, "live", None)
        thread = getattr(live, "_refresh_thread", None)
        if thread is not None:  # the throttled hooks below draw instead
            live.auto_refresh = False
            live._refresh_thread = None
            thread.stop()
            thread.join()

    def refresh(self, hard: bool = False) -> None:
        super().refresh(hard=True)  # without the thread, a soft refresh would never be drawn

    def _due(self, batch_idx: int, total: float | int) -> bool:
        now = time.monotonic()
        if now - self._last_draw >= self.interval or batch_idx + 1 >= total:
            self._last_draw = now
            return True
        return False

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._due(batch_idx, self.total_train_batches):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_predict_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._due(batch_idx, self.total_predict_batches_current_dataloader):
            super().on_predict_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
