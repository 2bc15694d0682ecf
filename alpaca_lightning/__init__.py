"""alpaca_lightning: self-training with pseudo-labels on top of self-supervised pretraining."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from alpaca_lightning.inference.classifier import RunClassifier


def load(run_dir: Any, round_index: int | None = None, overrides: Any = ()) -> RunClassifier:
    """The classifier of a finished run: ``alpaca_lightning.load(run_dir).predict(texts)``. Imported on first use,
    so that ``import alpaca_lightning`` stays light."""
    from alpaca_lightning.inference.classifier import load as load_run

    return load_run(run_dir, round_index, overrides)
