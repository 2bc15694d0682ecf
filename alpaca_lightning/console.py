"""Console output: our progress messages (rank zero only), and silence for library chatter a user can't act on."""

from __future__ import annotations

import logging
import warnings

import transformers
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
)


@rank_zero_only
def info(message: str) -> None:
    log.info(message)


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
