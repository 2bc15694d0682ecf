"""One run of the method, from a composed config to results.json.

config -> run folder (resolved config, seed, versions, commit) -> splits (pool labels hidden) -> backbone ->
round-0 stages (stages=[...]) -> rounds (supervised round 0, then pseudo-label rounds) -> results.json, report
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from alpaca_lightning.artifacts import read_json
from alpaca_lightning.console import info, quiet_libraries
from alpaca_lightning.context import HiddenPoolLabels, RunContext, task_text
from alpaca_lightning.data.datamodule import SelfTrainingDataModule
from alpaca_lightning.data.splits import TaskSplits
from alpaca_lightning.distributed import is_global_zero
from alpaca_lightning.errors import AlpacaError, DataError
from alpaca_lightning.loggers import LoggerFactory, RoundLogging, finish_wandb_run
from alpaca_lightning.models.backbone import load_tokenizer
from alpaca_lightning.models.base import ClassifierModule
from alpaca_lightning.models.loading import set_trust_remote_code
from alpaca_lightning.precision import PrecisionPlan, plan_precision
from alpaca_lightning.run_info import check_same_config, config_sha256, save_run_info, save_split_fingerprints
from alpaca_lightning.selftrain.prior import checked_prior
from alpaca_lightning.selftrain.report import build_results, finished_results, print_summary, write_outputs
from alpaca_lightning.selftrain.plan import resolve_plan
from alpaca_lightning.selftrain.rounds import RoundPlugins, SelfTrainingLoop
from alpaca_lightning.selftrain.run_report import RoundPlots
from alpaca_lightning.selftrain.settings import RoundSettings
from alpaca_lightning.selftrain.teachers import Teacher
from alpaca_lightning.stages import Stage, run_stages
from alpaca_lightning.tasks import SentenceClassification, TaskKind, check_units
from alpaca_lightning.trainer import TrainerFactory


def task_kind(cfg: DictConfig) -> TaskKind:
    """``task.kind``: what an example and a prediction look like (sentence classification by default)."""
    kind_cfg = cfg.task.get("kind")
    return instantiate(kind_cfg) if kind_cfg is not None else SentenceClassification()


def load_splits(cfg: DictConfig, kind: TaskKind | None = None) -> TaskSplits:
    split_cfg = OmegaConf.to_container(cfg.split, resolve=True)
    splits = (kind or task_kind(cfg)).load_splits(cfg.task, split_cfg, cfg.seed)
    if cfg.selftrain.max_rounds > 0 and len(splits.pool) == 0:
        raise DataError(
            f"The unlabelled pool of task '{cfg.task.name}' is empty (sizes: {splits.sizes()}), so there is "
            f"nothing to pseudo-label. Give more data, lower split.labels_per_class, add task.sources.unlabelled, "
            f"or set selftrain.max_rounds=0 for supervised training only."
        )
    return splits


def instantiate_list(group: DictConfig | None) -> list[Any]:
    """A config group selected as a list (teachers=[a,b], filters=[...], losses=[...], stages=[...])."""
    return [instantiate(item) for item in (group or {}).values()]


def build_teachers(cfg: DictConfig) -> list[Teacher]:
    teachers = instantiate_list(cfg.teachers)
    if not teachers and cfg.selftrain.max_rounds > 0:
        raise AlpacaError("teachers=[] leaves no teacher to pseudo-label the pool; use teachers=[classifier] at least.")
    return teachers


def build_settings(cfg: DictConfig) -> RoundSettings:
    return RoundSettings(**OmegaConf.to_container(cfg.selftrain, resolve=True))


def check_complete(cfg: DictConfig) -> None:
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise AlpacaError(
            f"The config leaves {missing} unset (???). Set them on the command line, e.g. "
            f"task.label_names=[neg,pos] task.sources.train.path=/data/train.csv"
        )


def build_plugins(cfg: DictConfig) -> RoundPlugins:
    """The round loop's choices: one option of each config group, instantiated."""
    return RoundPlugins(
        teachers=build_teachers(cfg), fusion=instantiate(cfg.fusion), filters=instantiate_list(cfg.filters),
        schedule=instantiate(cfg.schedule), calibration=instantiate(cfg.calibration),
        teacher_selection=instantiate(cfg.teacher_selection), student_init=instantiate(cfg.student_init),
    )


def build_context(
    cfg: DictConfig, kind: TaskKind, splits: TaskSplits, run_dir: Path, precision: PrecisionPlan, run_key: str = ""
) -> RunContext:
    """Backbone, tokenizer, trainers and the factories that every stage, teacher and round uses."""
    backbone_path = instantiate(cfg.model.backbone).materialize(run_dir, task_text(splits), cfg.seed)
    tokenizer = load_tokenizer(backbone_path)
    loggers = LoggerFactory(cfg.get("logger"), run_dir)
    trainers = TrainerFactory(cfg.hardware, cfg.trainer, loggers, run_dir, precision, run_key)
    # Objects go in through a partial: Hydra would try to turn keyword arguments into config nodes.
    data_partial = instantiate(cfg.data, _partial_=True)
    classifier_partial = instantiate(
        cfg.model.classifier, num_labels=len(splits.label_names), global_batch_size=cfg.data.batch_size
    )
    losses = instantiate_list(cfg.losses)

    def make_datamodule(task_splits: TaskSplits) -> SelfTrainingDataModule:
        return kind.make_datamodule(data_partial, task_splits, tokenizer, cfg.seed)

    def make_classifier(path: str, lr: float | None = None) -> ClassifierModule:
        if lr is None:
            return kind.make_classifier(classifier_partial, model_path=path, losses=losses)
        optimizer = classifier_partial.keywords["optimizer"]
        with_lr = functools.partial(optimizer.func, *optimizer.args, **{**optimizer.keywords, "lr": lr})
        return kind.make_classifier(classifier_partial, model_path=path, losses=losses, optimizer=with_lr)

    return RunContext(
        kind=kind, splits=splits, datamodule=make_datamodule(splits), make_datamodule=make_datamodule,
        make_classifier=make_classifier, trainers=trainers, tokenizer=tokenizer, backbone_path=backbone_path,
        run_dir=run_dir, seed=cfg.seed, global_batch_size=cfg.data.batch_size,
        prompt=OmegaConf.to_container(cfg.task.prompt, resolve=True) if cfg.task.get("prompt") else None,
        class_prior=checked_prior(cfg.task.get("class_prior"), splits.label_names),
    )


def record_run(cfg: DictConfig, run_dir: Path) -> PrecisionPlan:
    """The run folder's record (run_info.json, config_resolved.yaml), after refusing a folder of another config."""
    run_dir.mkdir(parents=True, exist_ok=True)
    check_same_config(cfg, run_dir)  # before run_info overwrites the folder's record
    precision = plan_precision(cfg.hardware.precision, cfg.hardware.accelerator)
    info(f"precision: training {precision.train}, prediction {precision.predict_dtype} ({precision.reason})")
    if is_global_zero():
        save_run_info(cfg, run_dir, precision=precision.to_dict())
    return precision


def draw_splits(cfg: DictConfig, kind: TaskKind, run_dir: Path) -> tuple[TaskSplits, HiddenPoolLabels]:
    """The run's splits with the pool's gold labels hidden (returned apart, for diagnostics only)."""
    drawn = load_splits(cfg, kind)
    if is_global_zero():
        save_split_fingerprints(run_dir, drawn)  # pool gold labels included: alpaca-reproduce checks the same data
    splits, pool_gold = kind.hide_pool_labels(drawn)
    hidden = HiddenPoolLabels(pool_gold)
    info(f"task '{cfg.task.name}' splits: {splits.sizes()}")
    return splits, hidden


def run(cfg: DictConfig) -> dict[str, Any]:
    try:
        return run_to_results(cfg)
    finally:
        finish_wandb_run()  # each run its own W&B run, also when the runs of a multirun share this process


def run_to_results(cfg: DictConfig) -> dict[str, Any]:
    check_complete(cfg)
    settings = build_settings(cfg)  # config errors surface before any data is read
    start = time.time()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if cfg.hardware.get("cpu_threads"):
        torch.set_num_threads(int(cfg.hardware.cpu_threads))
    quiet_libraries()
    set_trust_remote_code(cfg.model.get("trust_remote_code", False))  # the only switch; a model's own code runs if on
    run_dir = Path(cfg.paths.output_dir)
    run_key = config_sha256(cfg)
    finished = finished_results(run_dir, run_key)
    if finished is not None:  # e.g. a re-launched sweep: its finished jobs cost a file read
        info(f"{run_dir} already holds a finished run of this config (results.json); nothing to do")
        if is_global_zero():
            print_summary(read_json(run_dir / "rounds.json"), finished, run_dir)
        return finished
    precision = record_run(cfg, run_dir)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    kind = task_kind(cfg)
    splits, hidden = draw_splits(cfg, kind, run_dir)
    ctx = build_context(cfg, kind, splits, run_dir, precision, run_key)
    plugins = build_plugins(cfg)
    stages: list[Stage] = instantiate_list(cfg.stages)
    for group, parts in (("teachers", plugins.teachers), ("stages", stages), ("student_init", [plugins.student_init])):
        for part in parts:
            check_units(part, kind, group)
    for part in [*plugins.teachers, *stages]:
        part.check(ctx)
    plugins.student_init.check(stages)
    plan = resolve_plan(settings, stages, run_stages(stages, ctx, ctx.backbone_path))

    observers = [RoundPlots()]
    if is_global_zero():
        observers.append(RoundLogging(ctx.trainers.make_loggers("rounds")))
    loop = SelfTrainingLoop(ctx, plan, plugins, settings, hidden, observers, stages)
    records = [r.to_dict() for r in loop.run()]
    results = build_results(
        records, loop.stop_reason,
        {"task": cfg.task.name, "seed": cfg.seed, "monitor": settings.monitor,
         "select_round": plugins.schedule.chosen_by, "splits": splits.sizes(),
         "duplicates": splits.info["duplicates"], "wall_time_s": round(time.time() - start, 1)},
    )
    results["best_model"] = str(loop.round_dir(results["best_round"]) / "model")
    results["config_sha256"] = run_key
    results["label_names"] = list(splits.label_names)  # what alpaca-predict and alpaca-export name the classes
    results["use_command"] = kind.use_command(run_dir)
    if is_global_zero():
        write_outputs(run_dir, records, results, splits.label_names)
        print_summary(records, results, run_dir)
    return results
