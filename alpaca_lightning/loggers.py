"""Loggers per stage: every fit (pretraining, each round) gets its own logger instances, and the round table
goes to one more, ``rounds``, written by the main process only.

Separate instances matter under ``ddp_fork``/``ddp_spawn``: training runs in child processes with copies of the
loggers, so one instance shared by children and parent would write conflicting files.
CSV: ``logs/<stage>/metrics.csv``. W&B: one run per stage named ``<name>/<stage>``, grouped by ``group``.
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
            if make.func is WandbLogger:
                loggers.append(make(name=f"{make.keywords.get('name', 'alpaca')}/{stage}"))
            else:
                loggers.append(make(version=stage))
        return loggers
