"""One run of the method, from a composed config to results.json.

config -> run folder (resolved config, seed, versions, commit) -> splits -> backbone -> [self-supervised stage]
-> rounds (supervised round 0, then pseudo-label rounds) -> results.json, rounds table, summary
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from alpaca_lightning.console import info, quiet_libraries
from alpaca_lightning.data.datamodule import SelfTrainingDataModule
from alpaca_lightning.data.splits import TaskSpec, TaskSplits, build_splits
from alpaca_lightning.distributed import is_global_zero
from alpaca_lightning.errors import AlpacaError, DataError
from alpaca_lightning.loggers import LoggerFactory
from alpaca_lightning.models.backbone import load_tokenizer
from alpaca_lightning.models.classifier import SequenceClassifier
from alpaca_lightning.pretrain import run_pretraining
from alpaca_lightning.run_info import save_run_info
from alpaca_lightning.selftrain.report import build_results, print_summary, write_outputs
from alpaca_lightning.selftrain.rounds import RoundSettings, SelfTrainingLoop
from alpaca_lightning.selftrain.run_report import write_run_plot, write_run_report
from alpaca_lightning.selftrain.teachers import Teacher, TeacherContext
from alpaca_lightning.trainer import TrainerFactory


def task_spec(task_cfg: DictConfig) -> TaskSpec:
    fields = OmegaConf.to_container(task_cfg, resolve=True)
    fields.pop("sources")
    fields.pop("prompt", None)  # read by the prompt teachers
    sources = {name: instantiate(src) for name, src in task_cfg.sources.items() if src is not None}
    return TaskSpec(sources=sources, **fields)


def load_splits(cfg: DictConfig) -> TaskSplits:
    splits = build_splits(task_spec(cfg.task), seed=cfg.seed, **OmegaConf.to_container(cfg.split, resolve=True))
    if cfg.selftrain.max_rounds > 0 and len(splits.pool) == 0:
        raise DataError(
            f"The unlabelled pool of task '{cfg.task.name}' is empty (sizes: {splits.sizes()}), so there is "
            f"nothing to pseudo-label. Give more data, lower split.labels_per_class, add task.sources.unlabelled, "
            f"or set selftrain.max_rounds=0 for supervised training only."
        )
    return splits


def build_teachers(cfg: DictConfig) -> list[Teacher]:
    teachers = [instantiate(t) for t in (cfg.teachers or {}).values()]
    if not teachers and cfg.selftrain.max_rounds > 0:
        raise AlpacaError("teachers=[] leaves no teacher to pseudo-label the pool; use teachers=[classifier] at least.")
    return teachers


def check_complete(cfg: DictConfig) -> None:
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise AlpacaError(
            f"The config leaves {missing} unset (???). Set them on the command line, e.g. "
            f"task.label_names=[neg,pos] task.sources.train.path=/data/train.csv"
        )


def run(cfg: DictConfig) -> dict[str, Any]:
    check_complete(cfg)
    start = time.time()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    quiet_libraries()
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if is_global_zero():
        save_run_info(cfg, run_dir)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    splits = load_splits(cfg)
    info(f"task '{cfg.task.name}' splits: {splits.sizes()}")
    own_text = [t if isinstance(t, str) else " ".join(t) for t in splits.labelled.texts + splits.pool.texts]
    backbone_path = instantiate(cfg.model.backbone).materialize(run_dir, own_text, cfg.seed)
    tokenizer = load_tokenizer(backbone_path)

    make_loggers = LoggerFactory(cfg.get("logger"))
    trainers = TrainerFactory(cfg.hardware, cfg.trainer, make_loggers, run_dir)

    if cfg.pretrain.get("module") is not None:
        backbone_path = run_pretraining(
            make_module=instantiate(cfg.pretrain.module), data_kwargs=dict(cfg.pretrain.data), texts=own_text,
            tokenizer=tokenizer, backbone_path=backbone_path, trainers=trainers, run_dir=run_dir, seed=cfg.seed,
            max_epochs=cfg.pretrain.max_epochs, max_steps=cfg.pretrain.max_steps,
        )

    # Objects go in through a partial: Hydra would try to turn keyword arguments into config nodes.
    data_partial = instantiate(cfg.data, _partial_=True)

    def make_datamodule(task_splits: TaskSplits) -> SelfTrainingDataModule:
        return data_partial(splits=task_splits, tokenizer=tokenizer, seed=cfg.seed)

    datamodule = make_datamodule(splits)
    classifier_partial = instantiate(
        cfg.model.classifier, num_labels=len(splits.label_names), global_batch_size=cfg.data.batch_size
    )

    def make_classifier(path: str) -> SequenceClassifier:
        return classifier_partial(model_path=path)

    teacher_context = TeacherContext(
        splits=splits, datamodule=datamodule, make_datamodule=make_datamodule, make_classifier=make_classifier,
        trainers=trainers, tokenizer=tokenizer, backbone_path=backbone_path, run_dir=run_dir, seed=cfg.seed,
        supervised_epochs=cfg.selftrain.supervised_epochs, global_batch_size=cfg.data.batch_size,
        prompt=OmegaConf.to_container(cfg.task.prompt, resolve=True) if cfg.task.get("prompt") else None,
    )
    loop = SelfTrainingLoop(
        datamodule=datamodule,
        make_classifier=make_classifier,
        trainers=trainers,
        teachers=build_teachers(cfg),
        fusion=instantiate(cfg.fusion),
        teacher_context=teacher_context,
        filters=[instantiate(f) for f in (cfg.filters or {}).values()],
        settings=RoundSettings(**cfg.selftrain),
        run_dir=run_dir,
        backbone_path=backbone_path,
        tokenizer=tokenizer,
        seed=cfg.seed,
        round_loggers=make_loggers("rounds") if is_global_zero() else [],
    )
    records = loop.run()
    results = build_results(
        records, loop.stop_reason,
        {"task": cfg.task.name, "seed": cfg.seed, "monitor": cfg.selftrain.monitor, "splits": splits.sizes(),
         "wall_time_s": round(time.time() - start, 1)},
    )
    results["best_model"] = str(loop.round_dir(results["best_round"]) / "model")
    if is_global_zero():
        write_outputs(run_dir, records, results)
        write_run_plot(run_dir, records)
        write_run_report(run_dir, records, results, splits.label_names)
        print_summary(records, results, run_dir)
    return results
