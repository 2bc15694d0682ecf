"""alpaca_lightning: self-training with pseudo-labels on top of self-supervised pretraining."""

__version__ = "0.1.0"
