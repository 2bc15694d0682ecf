"""Loggers per stage: every fit (pretraining, each round) gets its own logger instances, and the round table
goes to one more, ``rounds``, written by the main process only.

Separate instances matter under ``ddp_fork``/``ddp_spawn``: training runs in child processes with copies of the
loggers, so one instance shared by children and parent would write conflicting files. Each kind keeps a run's
stages apart in its own way:
- CSV ``logs/<stage>/metrics.csv``, TensorBoard ``tensorboard/<stage>/events.out.tfevents.*``: a folder per stage.
- W&B: one W&B run per run. ``wandb.init`` returns the active run to later instances in the same process, so a
  single-process run logs every stage into it (training curves against ``trainer/global_step``, the round table
  under ``round/*``); under ``ddp_fork``/``ddp_spawn`` each fit's child process re-opens the same run id. The id is
  made once and kept in the run folder (``wandb_id.txt``), so a resumed run logs into the same W&B run.
- MLflow: one MLflow run per stage, named ``<run name>/<stage>``.
The runs of one multirun or search share a group (``${run_group:...}``: the sweep folder) and carry the
experiment's name as a tag (``tags``). Lightning's loggers write from global rank zero only.
"""

from __future__ import annotations

import functools
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from pytorch_lightning.loggers import Logger, MLFlowLogger, WandbLogger

from alpaca_lightning.artifacts import atomic_write_text
from alpaca_lightning.distributed import is_global_zero
from alpaca_lightning.selftrain.events import ROUND_FIGURES, RoundObserver
from alpaca_lightning.selftrain.records import RoundRecord

WANDB_ID_FILE = "wandb_id.txt"


class LoggerFactory:
    def __init__(self, logger_cfgs: Mapping[str, Any] | None, run_dir: Path) -> None:
        self.partials: list[functools.partial] = [
            instantiate(cfg, _partial_=True) for cfg in (logger_cfgs or {}).values()
        ]
        self.run_dir = Path(run_dir)

    def __call__(self, stage: str) -> list[Logger]:
        return [self._for_stage(make, stage) for make in self.partials]

    def _for_stage(self, make: functools.partial, stage: str) -> Logger:
        if make.func is WandbLogger:
            return make() if make.keywords.get("id") else make(id=wandb_run_id(self.run_dir))
        if make.func is MLFlowLogger:
            return make(run_name=f"{make.keywords.get('run_name')}/{stage}")
        return make(version=stage)


def wandb_run_id(run_dir: Path) -> str | None:
    """The run's W&B id, made by global rank zero on first use and kept in the run folder (other ranks do not log)."""
    if not is_global_zero():
        return None
    path = Path(run_dir) / WANDB_ID_FILE
    if not path.is_file():
        atomic_write_text(path, uuid.uuid4().hex[:12] + "\n")  # W&B ids: up to 64 of [a-z0-9_-]
    return path.read_text().strip()


def finish_wandb_run() -> None:
    """End this process's active W&B run: the next run of a multirun in the same process (basic launcher) would
    otherwise log into it."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()


def run_group(run_dir: str) -> str:
    """``${run_group:${paths.output_dir}}``: the sweep folder under --multirun (every job of a multirun or search
    shares it, also in a resumed sweep), else the run's own folder."""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return str(HydraConfig.get().sweep.dir)
    return str(run_dir)


def experiment_tags() -> list[str]:
    """``${experiment_tags:}``: the selected experiment's name (e.g. ``benchmark/mr_k8``), if any."""
    if not HydraConfig.initialized():
        return []
    experiment = HydraConfig.get().runtime.choices.get("experiment")
    return [experiment] if experiment else []


class RoundLogging(RoundObserver):
    """The round table in the run's loggers: each round's numbers under ``round/*`` at step k, and its figures where
    the logger shows images (W&B)."""

    def __init__(self, loggers: list[Logger]) -> None:
        self.loggers = loggers

    def round_done(self, folder: Path, record: RoundRecord) -> None:
        flat = record.to_dict()
        numeric = {f"round/{key}": v for key, v in flat.items() if isinstance(v, (int, float)) and v is not None}
        figures = [folder / name for name in ROUND_FIGURES if (folder / name).is_file()]
        for logger in self.loggers:
            logger.log_metrics(numeric, step=record.round)
            if figures and hasattr(logger, "log_image"):
                logger.log_image("round/figures", [str(f) for f in figures], step=record.round,
                                 caption=[ROUND_FIGURES[f.name] for f in figures])
            logger.save()
