"""Loggers per stage: every fit (pretraining, each round) gets its own logger instances, and the round table
goes to one more, ``rounds``, written by the main process only.

Separate instances matter under ``ddp_fork``/``ddp_spawn``: training runs in child processes with copies of the
loggers, so one instance shared by children and parent would write conflicting files.
CSV: ``logs/<stage>/metrics.csv``. W&B: ``wandb.init`` returns the active run to later instances in the same
process, so a single-process run logs every stage into one W&B run (training curves against
``trainer/global_step``, the round table under ``round/*``); under ``ddp_fork``/``ddp_spawn`` each fit's child
process opens its own run in the same ``group``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from hydra.utils import instantiate
from pytorch_lightning.loggers import Logger, WandbLogger


class LoggerFactory:
    def __init__(self, logger_cfgs: Mapping[str, Any] | None) -> None:
        self.partials: list[functools.partial] = [
            instantiate(cfg, _partial_=True) for cfg in (logger_cfgs or {}).values()
        ]

    def __call__(self, stage: str) -> list[Logger]:
        loggers = []
        for make in self.partials:
            loggers.append(make() if make.func is WandbLogger else make(version=stage))
        return loggers
