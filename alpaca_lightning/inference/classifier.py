"""A finished run's classifier in two lines: ``clf = alpaca_lightning.load(run_dir)``, then ``clf.predict(texts)``.

Examples go through the project's one prediction path (``selftrain/prediction.py``): the run's tokenizer and
``data.max_length``, length-sorted batches with dynamic padding, the run's precision plan (bf16 where the hardware
has it) and its ``hardware`` settings, DDP included, where each example is predicted once on one process and the
merged rows keep the input order. ``overrides`` change the hardware and data settings for prediction only, e.g.
``["hardware=gpu", "data.predict_batch_size=512"]`` or ``["hardware.precision=32-true"]``.

An example is what the run's task kind reads: a text (a ``(first, second)`` pair for a sentence-pair task), or for
a token task a sentence's words (a list, or a text split at white space). A sentence gets one class distribution,
a token task's sentence one per word.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig

from alpaca_lightning.assets import REPO_ROOT, register_resolvers
from alpaca_lightning.console import quiet_libraries
from alpaca_lightning.data.splits import TaskSplits
from alpaca_lightning.distributed import barrier, is_global_zero
from alpaca_lightning.errors import AlpacaError, DataError
from alpaca_lightning.inference.run_folder import TrainedRun, apply_overrides, open_run
from alpaca_lightning.models.backbone import load_tokenizer
from alpaca_lightning.models.base import ClassifierModule
from alpaca_lightning.models.loading import set_trust_remote_code
from alpaca_lightning.pipeline import task_kind
from alpaca_lightning.precision import plan_precision
from alpaca_lightning.tasks import TaskKind
from alpaca_lightning.trainer import TrainerFactory


class RunClassifier:
    """One round's classifier of a finished run (the reported round by default)."""

    def __init__(self, run: TrainedRun, overrides: Sequence[str] = ()) -> None:
        register_resolvers()
        quiet_libraries()
        self.run = run
        self.cfg = apply_overrides(run.cfg, list(overrides), REPO_ROOT / "conf")
        self.kind = task_kind(self.cfg)
        self.label_names = list(run.label_names)
        self.pairs = len(self.cfg.task.get("text_columns") or []) == 2
        self.tokenizer = load_tokenizer(str(run.model_dir))
        self.precision = plan_precision(self.cfg.hardware.precision, self.cfg.hardware.accelerator)
        self.module = run_module(run, self.cfg, self.kind)

    # --- prediction --------------------------------------------------------------------------------------------
    def predict_proba(self, examples: Sequence[Any], work_dir: str | Path | None = None) -> Any:
        """Class probabilities per example, in the input's order (columns: ``label_names``): an array with one row
        per text, or for a token task a list with one (words x labels) array per sentence. ``work_dir`` holds the
        per-process prediction shards; the default is a temporary folder, which a ``hardware.strategy=ddp`` launch
        (one script per process) cannot share: give it a path there."""
        examples = [self.kind.read_example(example) for example in examples]
        check_examples(examples, self.pairs)
        split = self.kind.inference_split(examples)
        if not examples:
            return self.kind.per_example(np.zeros((0, len(self.label_names)), dtype=np.float32), split)
        if work_dir is None:
            self._check_shared_work_dir()
            with tempfile.TemporaryDirectory(prefix="alpaca-predict-") as tmp:
                return self.kind.per_example(self._predict(split, Path(tmp)), split)
        return self.kind.per_example(self._predict(split, Path(work_dir)), split)

    def predict(self, examples: Sequence[Any], work_dir: str | Path | None = None) -> list:
        """The most probable label name of each text (of each word, for a token task)."""
        return [label_names_of(probs, self.label_names) for probs in self.predict_proba(examples, work_dir)]

    def _predict(self, split: Any, work_dir: Path) -> np.ndarray:
        empty = self.kind.inference_split([])
        splits = TaskSplits(self.label_names, empty, empty, empty, split)
        datamodule = self.kind.make_datamodule(instantiate(self.cfg.data, _partial_=True), splits, self.tokenizer,
                                               int(self.cfg.seed))
        trainers = TrainerFactory(self.cfg.hardware, dict(self.cfg.trainer), lambda stage: [], work_dir,
                                  self.precision)
        shards = work_dir / "shards"
        probs = self.kind.predict(self.module, datamodule, "test", trainers.predict, shards).probs
        barrier()  # every process has merged the shards (under strategy=ddp each runs this code) before they go
        if is_global_zero():
            shutil.rmtree(shards, ignore_errors=True)
        return probs

    def _check_shared_work_dir(self) -> None:
        hardware = self.cfg.hardware
        if str(hardware.get("strategy", "auto")) == "ddp" and hardware.get("devices") not in (1, "1"):
            raise AlpacaError("hardware.strategy=ddp runs this script once per process; give predict_proba a "
                              "work_dir that every process sees (alpaca-predict does), or use strategy=ddp_fork.")


def label_names_of(probs: np.ndarray, names: list[str]) -> str | list[str]:
    """The most probable name of one distribution, or of each row of a (words x labels) array."""
    if probs.ndim == 1:
        return names[int(probs.argmax())]
    return [names[i] for i in probs.argmax(axis=1)]


def run_module(run: TrainedRun, cfg: DictConfig, kind: TaskKind) -> ClassifierModule:
    """The round's classifier module in eval mode, built as the run built it (``model.classifier``)."""
    set_trust_remote_code(cfg.model.get("trust_remote_code", False))
    partial = instantiate(cfg.model.classifier, num_labels=len(run.label_names), global_batch_size=cfg.data.batch_size)
    # the saved encoder has any LoRA adapters merged in: load it as a plain encoder
    return kind.make_classifier(partial, model_path=str(run.model_dir), lora=None).eval()


def check_examples(examples: list, pairs: bool, first_row: int = 0) -> None:
    """Every input is a non-empty text, a pair of them (a sentence-pair task) or a non-empty list of words."""
    expected = "a pair of texts" if pairs else "a text"
    empty = []
    for i, example in enumerate(examples):
        if isinstance(example, list):  # a token task's words
            if not all(isinstance(w, str) for w in example):
                raise DataError(f"Input {first_row + i} is {example!r}: a sentence's words must be texts.")
            parts = example
        else:
            parts = example if isinstance(example, tuple) else (example,)
            if len(parts) != (2 if pairs else 1) or not all(isinstance(p, str) for p in parts):
                raise DataError(f"Input {first_row + i} is {example!r}, not {expected}: this run's task reads "
                                f"{'two text columns' if pairs else 'one text column'}.")
        if not parts or not all(p.strip() for p in parts):
            empty.append(first_row + i)
    if empty:
        raise DataError(f"{len(empty)} input(s) have an empty text (rows {empty[:10]}, counting from 0 after the "
                        f"header). Remove those rows or fill them in: an empty text has no label to predict.")


def load(run_dir: str | Path, round_index: int | None = None, overrides: Sequence[str] = ()) -> RunClassifier:
    """The classifier of a finished run: the reported round's (``round_index``: another kept round's)."""
    return RunClassifier(open_run(run_dir, round_index), overrides)
