"""Speed benchmark: the project's prediction and training paths side by side with what a user would
otherwise run, in one process, on the same sentences, model and batch sizes.

    ALPACA_DATA_DIR=../shared/data python experiments/speed.py            # SST-2, all-MiniLM-L6-v2, max length 64
    ALPACA_DATA_DIR=../shared/data python experiments/speed.py --default-job <git ref>  # + `alpaca-train` then/now
    ALPACA_DATA_DIR=../shared/data python experiments/speed.py --device cuda --override data.predict_batch_size=512
                                      # every path on the GPU (HF's tools too), in batches that fill it

Sections (each row: sentences per second; ratios against baselines measured in the same run):
  training    one epoch of --train-size labelled sentences, batch 16, AdamW, linear warm-up: HF ``Trainer``
              (group by length) and the project's fit, in fp32 and bf16, with test accuracy after the epoch
  prediction  --predict-size pool sentences: HF ``pipeline``, a hand loop (tokenized once, sorted by length,
              dynamic padding) and the project's ``predict_split``, all in batches of data.predict_batch_size, in
              fp32 and bf16, with the argmax agreement and accuracy of each low-precision path against its fp32
              twin (the models are the fine-tuned ones)
  rounds      one round's work at growing pool sizes: predict the pool, then a student epoch over it
  pairs       (not by default) the fp32 fit training only its own embedding rows against every row, in --pairs
              back-to-back pairs of alternating order: the median and spread of the per-pair time ratio
  profile     (not by default) torch.profiler over one epoch of the project's fit in fp32 and in bf16-mixed: the
              share of matrix products, the optimizer, dropout masks and dtype casts, the whole operator tables in
              profile_training.txt, and (with the training section) the ratio bf16-mixed would reach if its matrix
              products took no time
  default job (--default-job REF) the embedded default job (``alpaca-train``, seed 0) at REF and at the working
              tree, one after the other: wall time and test accuracy

Writes speed.json and speed.md to --out (default experiments/results/speed). Numbers need a quiet machine: other
jobs on the same cores change them more than any code path here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig

from alpaca_lightning.artifacts import atomic_write_json, atomic_write_text
from alpaca_lightning.assets import REPO_ROOT, register_resolvers
from alpaca_lightning.console import quiet_libraries
from alpaca_lightning.data.datamodule import SelfTrainingDataModule
from alpaca_lightning.data.splits import TaskSplits, TextSplit
from alpaca_lightning.models.backbone import load_tokenizer
from alpaca_lightning.models.base import ClassifierModule
from alpaca_lightning.models.losses import Supervised
from alpaca_lightning.pipeline import load_splits
from alpaca_lightning.precision import PrecisionPlan, cast_weights, plan_precision, restore_weights
from alpaca_lightning.selftrain.prediction import predict_split
from alpaca_lightning.trainer import TrainerFactory

DEFAULT_OVERRIDES = ["task=sst2", "model=minilm", "data.max_length=64"]
FP32 = PrecisionPlan("32-true", "float32", "speed.py: fp32")
BF16 = PrecisionPlan("bf16-mixed", "bfloat16", "speed.py: bf16")


@dataclass
class Bench:
    cfg: DictConfig
    splits: TaskSplits  # labelled: the training sentences; pool: the prediction sentences (gold labels kept)
    backbone_path: str
    work_dir: Path
    device: str = "cpu"  # cpu or cuda: where every path runs, the baselines included

    @property
    def num_labels(self) -> int:
        return len(self.splits.label_names)


@dataclass
class Row:
    section: str
    path: str
    sentences_per_s: float
    seconds: float
    extra: dict[str, Any]


def timed(fn: Callable[[], Any], repeats: int = 1) -> tuple[float, Any]:
    """Median seconds over ``repeats`` calls, and the last call's result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # a GPU path has returned when its kernels have finished
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


# --- setup ------------------------------------------------------------------------------------------------------
def setup(overrides: list[str], train_size: int, predict_size: int, test_size: int, work_dir: Path,
          device: str = "cpu") -> Bench:
    """The task's labelled source, split into training, prediction and test sentences (fixed seed 0)."""
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[
            *DEFAULT_OVERRIDES, "split.labels_per_class=null", f"split.pool_size={train_size + predict_size}",
            f"split.test_size={test_size}", "stages=[]", "selftrain.max_rounds=0", *overrides,
            f"paths.output_dir={work_dir}",
        ])
    splits = load_splits(cfg)
    every = splits.labelled  # labels_per_class=null: all of the (capped) source is labelled
    order = np.random.default_rng(0).permutation(len(every))
    splits = replace(
        splits, labelled=every.subset(order[:train_size]), pool=every.subset(order[train_size:]),
    )
    backbone = instantiate(cfg.model.backbone).materialize(work_dir, splits.labelled.texts, cfg.seed)
    return Bench(cfg, splits, backbone, work_dir, device)


def new_classifier(bench: Bench, **options: Any) -> ClassifierModule:
    pl.seed_everything(0, verbose=False)
    partial = instantiate(bench.cfg.model.classifier, num_labels=bench.num_labels,
                          global_batch_size=bench.cfg.data.batch_size, **options)
    return partial(model_path=bench.backbone_path, losses=[Supervised()])


def datamodule(bench: Bench, pool: TextSplit | None = None) -> SelfTrainingDataModule:
    splits = replace(bench.splits, pool=pool if pool is not None else bench.splits.pool)
    dm = instantiate(bench.cfg.data, _partial_=True)(splits=splits, tokenizer=load_tokenizer(bench.backbone_path),
                                                      seed=0)
    dm.prepare()
    return dm


def trainers(bench: Bench, plan: PrecisionPlan, name: str) -> TrainerFactory:
    """The project's Trainers as a run builds them, on the bench's device (where the hand loop and HF run too)."""
    hardware = {"accelerator": accelerator(bench), "devices": 1, "num_nodes": 1, "strategy": "auto"}
    return TrainerFactory(hardware, dict(bench.cfg.trainer), lambda stage: [], bench.work_dir / name, plan)


def accelerator(bench: Bench) -> str:
    return "gpu" if bench.device == "cuda" else "cpu"


# --- the hand loop and HF's tools: what a user would write or reach for ---------------------------------------
def encode(texts: list[str], tokenizer: Any, max_length: int) -> list[dict[str, list[int]]]:
    """Tokenized once, unpadded (the project also tokenizes each split once per run)."""
    encoded = tokenizer(texts, truncation=True, max_length=max_length)
    return [{key: encoded[key][i] for key in encoded.keys()} for i in range(len(texts))]


def hand_loop_probs(forward: Callable[[dict[str, torch.Tensor]], torch.Tensor], encoded: list[dict[str, list[int]]],
                    tokenizer: Any, batch_size: int, device: str = "cpu") -> np.ndarray:
    """Sorted by length, dynamic padding, inference mode: the fast loop one writes by hand (the model on
    ``device``)."""
    order = np.argsort([-len(e["input_ids"]) for e in encoded], kind="stable")
    probs = np.zeros((len(encoded), 0), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(encoded), batch_size):
            index = order[start:start + batch_size]
            batch = tokenizer.pad([encoded[i] for i in index], return_tensors="pt")
            batch = {key: value.to(device, non_blocking=True) for key, value in batch.items()}
            out = torch.softmax(forward(batch).float(), dim=-1).cpu().numpy()
            if probs.shape[1] == 0:
                probs = np.zeros((len(encoded), out.shape[1]), dtype=np.float32)
            probs[index] = out
    return probs


def with_weights_in(module: torch.nn.Module, dtype: torch.dtype, predict: Callable[[], np.ndarray]) -> np.ndarray:
    """``predict`` with the module cast to ``dtype`` (the project's cast, so both paths pay the same for it)."""
    saved = cast_weights(module, dtype)
    try:
        return predict()
    finally:
        restore_weights(module, saved)


def hf_sequence_classifier(bench: Bench) -> torch.nn.Module:
    from transformers import AutoModelForSequenceClassification

    pl.seed_everything(0, verbose=False)
    model = AutoModelForSequenceClassification.from_pretrained(bench.backbone_path, num_labels=bench.num_labels)
    return model.eval()


def hf_pipeline_labels(bench: Bench, texts: list[str]) -> list[str]:
    from transformers import pipeline

    classify = pipeline("text-classification", model=hf_sequence_classifier(bench),
                        tokenizer=load_tokenizer(bench.backbone_path), device=0 if bench.device == "cuda" else -1)
    return [out["label"] for out in classify(texts, batch_size=bench.cfg.data.predict_batch_size, truncation=True,
                                             max_length=bench.cfg.data.max_length)]


def warm_up_bench(bench: Bench) -> Bench:
    """The first 64 training sentences: an untimed fit on them pays a process's one-off costs (allocator, oneDNN
    kernel selection), which would otherwise land on whichever path runs first."""
    return replace(bench, splits=replace(bench.splits, labelled=bench.splits.labelled.subset(range(64))))


def project_fit(bench: Bench, plan: PrecisionPlan, **options: Any) -> ClassifierModule:
    """One epoch of the project's fit, as a round runs it; returns the module in eval mode, on the bench's device
    (Lightning hands it back on the CPU)."""
    module, dm = new_classifier(bench, **options), datamodule(bench)
    trainers(bench, plan, "fit").fit("speed", max_epochs=1).fit(module, datamodule=dm)
    return module.eval().to(bench.device)


def hf_trainer_fit(bench: Bench, bf16: bool) -> torch.nn.Module:
    """One epoch of HF's Trainer with the project's recipe (lr, weight decay, warm-up, clipping, batch 16)."""
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    tokenizer = load_tokenizer(bench.backbone_path)
    labelled = bench.splits.labelled
    data = Dataset.from_dict({"text": labelled.texts, "label": labelled.labels.tolist()}).map(
        lambda rows: tokenizer(rows["text"], truncation=True, max_length=bench.cfg.data.max_length), batched=True,
        remove_columns=["text"],
    )
    optimizer = bench.cfg.model.classifier.optimizer
    args = TrainingArguments(
        output_dir=str(bench.work_dir / "hf_trainer"), per_device_train_batch_size=bench.cfg.data.batch_size,
        num_train_epochs=1, learning_rate=optimizer.lr, weight_decay=bench.cfg.model.classifier.weight_decay,
        warmup_steps=0.1, lr_scheduler_type="linear", max_grad_norm=1.0, train_sampling_strategy="group_by_length",
        bf16=bf16, use_cpu=bench.device == "cpu", report_to="none", save_strategy="no",
        logging_strategy="no", seed=0, data_seed=0,
    )
    model = hf_sequence_classifier(bench)
    Trainer(model=model, args=args, train_dataset=data, data_collator=DataCollatorWithPadding(tokenizer)).train()
    return model.eval()


def accuracy(probs: np.ndarray, gold: np.ndarray) -> float:
    return float((probs.argmax(1) == gold).mean())


# --- sections ---------------------------------------------------------------------------------------------------
def interleaved(paths: dict[str, Callable[[], Any]], repeats: int) -> dict[str, tuple[float, Any]]:
    """Median seconds of each path over ``repeats`` rounds that run every path once, in turn (a slow spell of a
    shared machine then hits every path alike), and each path's result from the last round. Each round starts one
    path later than the one before: a path's time can depend on the one that ran just before it (the state it
    leaves in the allocator and caches), and the same predecessor every time would bias that path."""
    times: dict[str, list[float]] = {name: [] for name in paths}
    results: dict[str, Any] = {}
    names = list(paths)
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            seconds, results[name] = timed(paths[name])
            times[name].append(seconds)
    return {name: (statistics.median(times[name]), results[name]) for name in paths}


def training_rows(bench: Bench, repeats: int) -> tuple[list[Row], ClassifierModule]:
    """Returns the rows and the project's fp32 classifier (fine-tuned for one epoch), for the prediction rows."""
    tokenizer = load_tokenizer(bench.backbone_path)
    test = bench.splits.test
    test_encoded = encode(test.texts, tokenizer, bench.cfg.data.max_length)
    batch = bench.cfg.data.predict_batch_size
    n = len(bench.splits.labelled)

    def hf_fit(bench: Bench, bf16: bool) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
        model = hf_trainer_fit(bench, bf16)
        return lambda batch: model(**batch).logits

    def paths(bench: Bench) -> dict[str, Callable[[], Any]]:
        return {
            "HF Trainer, group by length, fp32": lambda: hf_fit(bench, False),
            "HF Trainer, group by length, bf16": lambda: hf_fit(bench, True),
            "project fit, 32-true": lambda: project_fit(bench, FP32),
            # what training only the fit's own embedding rows saves (models/embedding_rows.py)
            "project fit, 32-true, embedding_updates=all": lambda: project_fit(bench, FP32, embedding_updates="all"),
            BF16_FIT: lambda: project_fit(bench, BF16),
        }

    interleaved(paths(warm_up_bench(bench)), 1)  # untimed
    rows = []
    measured = interleaved(paths(bench), repeats)
    for name, (seconds, forward) in measured.items():
        acc = accuracy(hand_loop_probs(forward, test_encoded, tokenizer, batch, bench.device), test.labels)
        rows.append(Row("training", name, n / seconds, seconds, {"test_acc": acc}))
    return rows, measured["project fit, 32-true"][1]


def prediction_rows(bench: Bench, module: ClassifierModule, repeats: int) -> list[Row]:
    tokenizer = load_tokenizer(bench.backbone_path)
    pool = bench.splits.pool
    encoded = encode(pool.texts, tokenizer, bench.cfg.data.max_length)
    batch = bench.cfg.data.predict_batch_size  # every path predicts in batches of this size
    dm = datamodule(bench)
    factories = {plan.predict_dtype: trainers(bench, plan, "predict") for plan in (FP32, BF16)}

    def hand_loop() -> np.ndarray:
        module.to(bench.device)  # a no-op on CPU; on a GPU, Lightning's predict handed the module back on the CPU
        return hand_loop_probs(module, encoded, tokenizer, batch, bench.device)

    def hand_loop_autocast() -> np.ndarray:
        with torch.autocast(bench.device, dtype=torch.bfloat16):
            return hand_loop()

    def hand_loop_cast() -> np.ndarray:
        return with_weights_in(module, torch.bfloat16, hand_loop)

    def project(dtype: str) -> Callable[[], np.ndarray]:
        return lambda: predict_split(module, dm, "pool", factories[dtype].predict, bench.work_dir / "shards").probs

    paths = {
        "HF pipeline, fp32": lambda: hf_pipeline_labels(bench, pool.texts),
        "hand loop, fp32": hand_loop,
        "hand loop, bf16 autocast": hand_loop_autocast,
        "hand loop, model cast to bf16": hand_loop_cast,
        "project predict_split, float32": project("float32"),
        "project predict_split, bfloat16": project("bfloat16"),
    }
    hand_loop_probs(module, encoded[:256], tokenizer, batch, bench.device)  # warm-up (allocator, kernels)
    measured = interleaved(paths, repeats)
    # each low-precision path against its own fp32 twin
    reference = {"hand loop": measured["hand loop, fp32"][1], "project": measured["project predict_split, float32"][1]}
    rows = []
    for name, (seconds, probs) in measured.items():
        extra: dict[str, Any] = {}
        if not name.startswith("HF"):
            extra["accuracy"] = accuracy(probs, pool.labels)
            twin = reference["hand loop" if name.startswith("hand loop") else "project"]
            if probs is not twin:
                extra["argmax_agreement"] = float((probs.argmax(1) == twin.argmax(1)).mean())
        rows.append(Row("prediction", name, len(pool) / seconds, seconds, extra))
    return rows


def paired_rows(bench: Bench, pairs: int) -> list[Row]:
    """The fp32 fit with ``embedding_updates=seen`` (the default) against ``all``, in back-to-back pairs whose
    order alternates: on a shared machine whose speed drifts, the ratio within each pair is steadier than a ratio
    of medians. Reports each path's median rate and the median and spread of the per-pair time ratios."""
    n = len(bench.splits.labelled)
    options = {"seen": {}, "all": {"embedding_updates": "all"}}
    for name in options:
        project_fit(warm_up_bench(bench), FP32, **options[name])  # untimed
    seconds: dict[str, list[float]] = {"seen": [], "all": []}
    for pair in range(pairs):
        for name in (("seen", "all") if pair % 2 == 0 else ("all", "seen")):
            spent, _ = timed(lambda: project_fit(bench, FP32, **options[name]))
            seconds[name].append(spent)
    ratios = [a / s for a, s in zip(seconds["all"], seconds["seen"])]
    spread = {"pair_ratio_median": statistics.median(ratios), "pair_ratio_min": min(ratios),
              "pair_ratio_max": max(ratios)}
    return [Row("pairs", f"project fit, 32-true, embedding_updates={name}", n / statistics.median(seconds[name]),
                statistics.median(seconds[name]), spread if name == "seen" else {}) for name in ("all", "seen")]


MATMULS = "matrix products (mm, addmm, bmm)"
PROFILE_GROUPS = {
    MATMULS: ("aten::mm", "aten::addmm", "aten::bmm"),
    "fused AdamW": ("aten::_fused_adamw_",),
    "dropout masks (bernoulli_, uniform_)": ("aten::bernoulli_", "aten::uniform_"),
    "dtype casts (_to_copy)": ("aten::_to_copy",),
}
BF16_FIT = "project fit, bf16-mixed"


def profile_rows(bench: Bench, out: Path) -> list[Row]:
    """Where one epoch of the project's fit spends its time, in fp32 and in bf16-mixed: torch.profiler's self CPU
    time per operator, grouped (rows "<precision>: <group>"); the whole tables go to ``out/profile_training.txt``."""
    from torch.profiler import ProfilerActivity, profile

    rows, tables = [], []
    for plan in (FP32, BF16):
        project_fit(warm_up_bench(bench), plan)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            project_fit(bench, plan)
        events = prof.key_averages()
        tables.append(f"# {plan.train}\n\n" + events.table(sort_by="self_cpu_time_total", row_limit=30))
        total = sum(e.self_cpu_time_total for e in events)
        for name, ops in PROFILE_GROUPS.items():
            spent = sum(e.self_cpu_time_total for e in events if e.key in ops)
            rows.append(Row("profile", f"{plan.train}: {name}", 0.0, spent / 1e6, {"share": spent / total}))
    atomic_write_text(out / "profile_training.txt", "\n\n".join(tables))
    return rows


def free_matmul_ceiling(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Amdahl's bound for bf16-mixed training, from the training and profile rows of the same run: the ratio the
    bf16-mixed fit would reach against the fp32 HF Trainer if its matrix products took no time at all (only they
    get faster in bf16; the rest of the step is what bounds it)."""
    by_key = {(r["section"], r["path"]): r for r in rows}
    fit = by_key.get(("training", BF16_FIT))
    share = by_key.get(("profile", f"{BF16.train}: {MATMULS}"))
    if fit is None or share is None or "ratio" not in fit:
        return rows
    ceiling = fit["ratio"] / (1.0 - share["share"])
    return [*rows, {"section": "profile", "path": f"{BF16_FIT}, if its matrix products took no time",
                    "sentences_per_s": 0.0, "seconds": None, "ratio": round(ceiling, 2)}]


def batch_size_rows(bench: Bench, batch_sizes: list[int], repeats: int) -> list[Row]:
    """The hand loop (fp32 and a bf16-cast model) at several prediction batch sizes: what data.predict_batch_size
    should be on this machine. The model's weights do not change the speed, so it is not fine-tuned here."""
    tokenizer = load_tokenizer(bench.backbone_path)
    module = new_classifier(bench).eval().to(bench.device)
    encoded = encode(bench.splits.pool.texts, tokenizer, bench.cfg.data.max_length)

    def loop(size: int, dtype: torch.dtype) -> Callable[[], np.ndarray]:
        return lambda: with_weights_in(
            module, dtype, lambda: hand_loop_probs(module, encoded, tokenizer, size, bench.device))

    paths = {f"hand loop, {name}, batch {size}": loop(size, dtype)
             for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)) for size in batch_sizes}
    hand_loop_probs(module, encoded[:256], tokenizer, 64, bench.device)  # warm-up
    return [Row("batch sizes", name, len(encoded) / seconds, seconds, {})
            for name, (seconds, _) in interleaved(paths, repeats).items()]


def round_rows(bench: Bench, pool_sizes: list[int], plan: PrecisionPlan) -> list[Row]:
    """One pseudo-label round's work at each pool size: predict the pool, then one student epoch over the pool
    (every example selected: the upper bound of a round), with the machine's ``auto`` precision."""
    rows = []
    module = new_classifier(bench)
    every = bench.splits.pool
    for size in pool_sizes:
        pool = every.subset(range(min(size, len(every))))
        dm = datamodule(bench, pool)
        factory = trainers(bench, plan, f"round_{size}")

        def one_round() -> None:
            predictions = predict_split(module, dm, "pool", factory.predict, bench.work_dir / "shards")
            dm.start_round(1, np.arange(len(pool)), predictions.labels)
            factory.fit("round", max_epochs=1).fit(module, datamodule=dm)

        seconds, _ = timed(one_round)
        rows.append(Row("rounds", f"pool {len(pool)}", len(pool) / seconds, seconds,
                        {"ms_per_pool_example": 1000 * seconds / len(pool)}))
    return rows


def default_job_rows(base_ref: str, overrides: list[str], work_dir: Path, out: Path) -> list[Row]:
    """``alpaca-train`` (the embedded default job) at ``base_ref`` (a git worktree) and in this working tree,
    one after the other, same seed; wall time and test accuracy of the best round. Each job's console output goes
    to ``out/default_job_{base,new}.txt``."""
    rows = []
    worktree = Path(tempfile.mkdtemp(prefix="speed-base-"))
    subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "add", "--detach", str(worktree), base_ref], check=True,
                   capture_output=True)
    try:
        for label, root in ((f"default job at {base_ref}", worktree), ("default job, working tree", REPO_ROOT)):
            name = "default_job_base" if root == worktree else "default_job_new"
            run_dir = work_dir / name
            env = {**os.environ, "PYTHONPATH": str(root)}
            command = [sys.executable, "-m", "alpaca_lightning.train", *overrides, f"paths.output_dir={run_dir}",
                       f"hydra.run.dir={run_dir}", "trainer.enable_progress_bar=false"]
            with open(out / f"{name}.txt", "w") as console:
                start = time.perf_counter()
                subprocess.run(command, cwd=root, env=env, check=True, stdout=console, stderr=subprocess.STDOUT)
                seconds = time.perf_counter() - start
            results = json.loads((run_dir / "results.json").read_text())
            rows.append(Row("default job", label, 0.0, seconds, {
                "test_acc": results["best"].get("test/acc"),
                "round0_test_acc": results.get("supervised_only", {}).get("test/acc"),
                "best_round": results["best_round"],
            }))
    finally:
        subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "remove", "--force", str(worktree)],
                       capture_output=True)
    return rows


# --- report -----------------------------------------------------------------------------------------------------
BASELINES = {"training": "HF Trainer, group by length, fp32", "prediction": "HF pipeline, fp32",
             "batch sizes": "hand loop, fp32, batch 128"}
SECOND_BASELINE = {"prediction": "hand loop, fp32"}


def with_ratios(rows: list[Row]) -> list[dict[str, Any]]:
    rate = {(r.section, r.path): r.sentences_per_s for r in rows}
    out = []
    for row in rows:
        item = {"section": row.section, "path": row.path, "sentences_per_s": round(row.sentences_per_s, 1),
                "seconds": round(row.seconds, 2), **row.extra}
        for key, baselines in (("ratio", BASELINES), ("ratio_2", SECOND_BASELINE)):
            base = rate.get((row.section, baselines.get(row.section)))
            if base:
                item[key] = round(row.sentences_per_s / base, 2)
        out.append(item)
    return out


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Speed benchmark", "",
        f"Machine: {report['machine']}. Model: `{report['model']}`, max length {report['max_length']}. "
        f"`hardware.precision=auto` here: {report['auto']['train']} training, {report['auto']['predict_dtype']} "
        f"prediction ({report['auto']['reason']}). Matmul {report.get('matmul_size', 2048)}^2: "
        f"fp32 {report['matmul_gflops']['fp32']} GFLOP/s, "
        f"bf16 {report['matmul_gflops']['bf16']} GFLOP/s (the ceiling of any bf16 gain here).", "",
        f"Command: `{report['command']}`", "",
    ]
    titles = {
        "training": f"Training, one epoch of {report['train_size']} sentences (ratio: against "
                    f"{BASELINES['training']})",
        "prediction": f"Prediction, {report['predict_size']} sentences, batches of {report['predict_batch_size']} "
                      f"(ratio: against {BASELINES['prediction']}; ratio 2: against {SECOND_BASELINE['prediction']})",
        "rounds": "One round (predict the pool, one student epoch over it), auto precision",
        "default job": "The embedded default job (`alpaca-train`, seed 0), base commit against the working tree",
        "pairs": "Training only the fit's own embedding rows, in back-to-back pairs of fp32 fits (pair ratio: the "
                 "time with every row over the time with the fit's rows, within each pair)",
        "profile": "Where one epoch of the project's fit spends its time, fp32 and bf16-mixed (torch.profiler, self "
                   f"CPU time; the whole tables: profile_training.txt; ratio: against {BASELINES['training']})",
        "batch sizes": f"Hand loop by prediction batch size, {report['predict_size']} sentences (ratio: against "
                       f"{BASELINES['batch sizes']})",
    }
    for section, title in titles.items():
        rows = [r for r in report["rows"] if r["section"] == section]
        if not rows:
            continue
        keys = [k for k in ("sentences_per_s", "ratio", "ratio_2", "seconds", "test_acc", "accuracy",
                            "argmax_agreement", "ms_per_pool_example", "round0_test_acc", "best_round", "share",
                            "pair_ratio_median", "pair_ratio_min", "pair_ratio_max")
                if any(k in r for r in rows) and not (k == "sentences_per_s" and not any(r[k] for r in rows))]
        lines += [f"## {title}", "", "| path | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        for r in rows:
            cells = [format_cell(k, r.get(k)) for k in keys]
            lines.append(f"| {r['path']} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def format_cell(key: str, value: Any) -> str:
    if value is None or value == "":
        return ""
    if key in ("test_acc", "accuracy", "argmax_agreement", "round0_test_acc", "share"):
        return f"{100 * value:.1f}%"
    if key.startswith("ratio") or key.startswith("pair_ratio"):
        return f"{value:.2f}x"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def matmul_size(device: str) -> int:
    return 8192 if device == "cuda" else 2048  # a GPU needs a larger product to be busy


def matmul_gflops(dtype: torch.dtype, device: str = "cpu", repeats: int = 5) -> float:
    """The device's ceiling for this dtype: a square matmul, as every linear layer is at heart."""
    size = matmul_size(device)
    if device == "cuda":
        repeats = 20
    a, b = torch.randn(size, size, device=device).to(dtype), torch.randn(size, size, device=device).to(dtype)
    a @ b  # warm-up

    def product() -> None:
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()

    seconds, _ = timed(product, repeats)
    return 2 * size**3 / seconds / 1e9


def model_name(cfg: DictConfig) -> str:
    backbone = cfg.model.backbone
    return str(backbone.get("name_or_path") or backbone._target_)


def machine(device: str = "cpu") -> str:
    cpu = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").is_file():
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    host = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
    return f"{torch.cuda.get_device_name()} (every path on the GPU); {host}" if device == "cuda" else host


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "experiments" / "results" / "speed")
    parser.add_argument("--train-size", type=int, default=1024)
    parser.add_argument("--predict-size", type=int, default=2000)
    parser.add_argument("--test-size", type=int, default=872)
    parser.add_argument("--repeats", type=int, default=5, help="prediction timings: median of this many")
    parser.add_argument("--train-repeats", type=int, default=3, help="training timings: median of this many")
    parser.add_argument("--round-pools", type=int, nargs="*", default=[500, 1000, 2000, 4000, 8000])
    parser.add_argument("--sections", nargs="+", default=["training", "prediction", "rounds"],
                        choices=["training", "prediction", "rounds", "batch_sizes", "profile", "pairs"])
    parser.add_argument("--pairs", type=int, default=8, help="the pairs section: how many pairs of fits")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64, 128, 256],
                        help="the batch_sizes section: prediction batch sizes to compare")
    parser.add_argument("--default-job", metavar="REF", help="also time alpaca-train at this git commit and now")
    parser.add_argument("--job-override", action="append", default=[], help="override for both default jobs")
    parser.add_argument("--override", action="append", default=[], help="config override, e.g. model=tiny_bert")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="where every path runs (cuda: HF's pipeline and Trainer, the hand loop and the project)")
    args = parser.parse_args()
    return run(args)


def run(args: argparse.Namespace) -> int:
    register_resolvers()
    quiet_libraries()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args.out.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix="speed-"))
    try:
        pool_size = max([args.predict_size, *args.round_pools]) if "rounds" in args.sections else args.predict_size
        if args.device == "cuda" and not torch.cuda.is_available():
            raise SystemExit("--device cuda: torch sees no GPU here; run on a GPU machine or with --device cpu")
        if args.device == "cuda" and args.default_job:
            raise SystemExit("--default-job times the CPU default job; run it without --device cuda")
        bench = setup(args.override, args.train_size, pool_size, args.test_size, work_dir, args.device)
        rows: list[Row] = []
        module = None
        if "training" in args.sections or "prediction" in args.sections:
            training, module = training_rows(bench, args.train_repeats)
            rows += training if "training" in args.sections else []
        if "prediction" in args.sections:
            predict_bench = replace(bench, splits=replace(bench.splits,
                                                          pool=bench.splits.pool.subset(range(args.predict_size))))
            rows += prediction_rows(predict_bench, module, args.repeats)
        if "batch_sizes" in args.sections:
            predict_bench = replace(bench, splits=replace(bench.splits,
                                                          pool=bench.splits.pool.subset(range(args.predict_size))))
            rows += batch_size_rows(predict_bench, args.batch_sizes, args.repeats)
        if "profile" in args.sections:
            rows += profile_rows(bench, args.out)
        if "pairs" in args.sections:
            rows += paired_rows(bench, args.pairs)
        auto = plan_precision("auto", accelerator(bench))
        if "rounds" in args.sections:
            rows += round_rows(bench, args.round_pools, auto)
        if args.default_job:
            rows += default_job_rows(args.default_job, args.job_override, work_dir, args.out)
        report = {
            "command": " ".join(["python", "experiments/speed.py", *sys.argv[1:]]),
            "machine": machine(args.device), "model": model_name(bench.cfg),
            "matmul_gflops": {name: round(matmul_gflops(dtype, args.device))
                              for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))},
            "matmul_size": matmul_size(args.device), "max_length": bench.cfg.data.max_length,
            "train_size": args.train_size,
            "predict_size": args.predict_size, "predict_batch_size": bench.cfg.data.predict_batch_size,
            "auto": auto.to_dict(), "rows": free_matmul_ceiling(with_ratios(rows)),
        }
        atomic_write_json(args.out / "speed.json", report)
        atomic_write_text(args.out / "speed.md", markdown(report))
        print(markdown(report))
        return 0
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
