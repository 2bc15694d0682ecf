"""A finished run's classifier in two lines: ``clf = alpaca_lightning.load(run_dir)``, then ``clf.predict(texts)``.

Texts go through the project's one prediction path (``selftrain/prediction.py``): the run's tokenizer and
``data.max_length``, length-sorted batches with dynamic padding, the run's precision plan (bf16 where the hardware
has it) and its ``hardware`` settings, DDP included, where each text is predicted once on one process and the
merged rows keep the input order. ``overrides`` change the hardware and data settings for prediction only, e.g.
``["hardware=gpu", "data.predict_batch_size=512"]`` or ``["hardware.precision=32-true"]``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig

from alpaca_lightning.assets import REPO_ROOT, register_resolvers
from alpaca_lightning.console import quiet_libraries
from alpaca_lightning.data.splits import UNKNOWN_LABEL, TaskSplits, Text, TextSplit
from alpaca_lightning.distributed import barrier, is_global_zero
from alpaca_lightning.errors import AlpacaError, DataError
from alpaca_lightning.inference.run_folder import TrainedRun, apply_overrides, open_run
from alpaca_lightning.models.backbone import load_tokenizer
from alpaca_lightning.models.base import ClassifierModule
from alpaca_lightning.models.loading import set_trust_remote_code
from alpaca_lightning.pipeline import task_kind
from alpaca_lightning.precision import plan_precision
from alpaca_lightning.selftrain.prediction import predict_split
from alpaca_lightning.tasks import SentenceClassification, TaskKind
from alpaca_lightning.trainer import TrainerFactory


class RunClassifier:
    """One round's classifier of a finished run (the reported round by default)."""

    def __init__(self, run: TrainedRun, overrides: Sequence[str] = ()) -> None:
        register_resolvers()
        quiet_libraries()
        self.run = run
        self.cfg = apply_overrides(run.cfg, list(overrides), REPO_ROOT / "conf")
        kind = task_kind(self.cfg)
        if not isinstance(kind, SentenceClassification):
            raise AlpacaError(
                f"Prediction from a run folder serves sentence (and sentence-pair) classification; this run's task "
                f"kind is {kind.name}. Export it instead: alpaca-export {run.run_dir} OUT --format transformers "
                f"(the transformers token-classification pipeline loads it) or --format onnx."
            )
        self.kind = kind
        self.label_names = list(run.label_names)
        self.pairs = len(self.cfg.task.text_columns) == 2
        self.tokenizer = load_tokenizer(str(run.model_dir))
        self.precision = plan_precision(self.cfg.hardware.precision, self.cfg.hardware.accelerator)
        self.module = run_module(run, self.cfg, kind)

    # --- prediction --------------------------------------------------------------------------------------------
    def predict_proba(self, texts: Sequence[Text], work_dir: str | Path | None = None) -> np.ndarray:
        """One row of class probabilities per text, in the input's order (columns: ``label_names``).
        ``work_dir`` holds the per-process prediction shards; the default is a temporary folder, which a
        ``hardware.strategy=ddp`` launch (one script per process) cannot share: give it a path there."""
        texts = list(texts)
        check_texts(texts, self.pairs)
        if not texts:
            return np.zeros((0, len(self.label_names)), dtype=np.float32)
        if work_dir is None:
            self._check_shared_work_dir()
            with tempfile.TemporaryDirectory(prefix="alpaca-predict-") as tmp:
                return self._predict(texts, Path(tmp))
        return self._predict(texts, Path(work_dir))

    def predict(self, texts: Sequence[Text], work_dir: str | Path | None = None) -> list[str]:
        """The most probable label name of each text."""
        probs = self.predict_proba(texts, work_dir)
        return [self.label_names[i] for i in probs.argmax(axis=1)]

    def _predict(self, texts: list[Text], work_dir: Path) -> np.ndarray:
        unknown = np.full(len(texts), UNKNOWN_LABEL, dtype=np.int64)
        empty = TextSplit([], np.zeros(0, dtype=np.int64))
        splits = TaskSplits(self.label_names, empty, empty, empty, TextSplit(texts, unknown))
        datamodule = self.kind.make_datamodule(instantiate(self.cfg.data, _partial_=True), splits, self.tokenizer,
                                               int(self.cfg.seed))
        trainers = TrainerFactory(self.cfg.hardware, dict(self.cfg.trainer), lambda stage: [], work_dir,
                                  self.precision)
        shards = work_dir / "shards"
        probs = predict_split(self.module, datamodule, "test", trainers.predict, shards).probs
        barrier()  # every process has merged the shards (under strategy=ddp each runs this code) before they go
        if is_global_zero():
            shutil.rmtree(shards, ignore_errors=True)
        return probs

    def _check_shared_work_dir(self) -> None:
        hardware = self.cfg.hardware
        if str(hardware.get("strategy", "auto")) == "ddp" and hardware.get("devices") not in (1, "1"):
            raise AlpacaError("hardware.strategy=ddp runs this script once per process; give predict_proba a "
                              "work_dir that every process sees (alpaca-predict does), or use strategy=ddp_fork.")


def run_module(run: TrainedRun, cfg: DictConfig, kind: TaskKind) -> ClassifierModule:
    """The round's classifier module in eval mode, built as the run built it (``model.classifier``)."""
    set_trust_remote_code(cfg.model.get("trust_remote_code", False))
    partial = instantiate(cfg.model.classifier, num_labels=len(run.label_names), global_batch_size=cfg.data.batch_size)
    # the saved encoder has any LoRA adapters merged in: load it as a plain encoder
    return kind.make_classifier(partial, model_path=str(run.model_dir), lora=None).eval()


def check_texts(texts: list[Text], pairs: bool, first_row: int = 0) -> None:
    """Every input is a non-empty text (or a pair of them, for a sentence-pair task)."""
    expected = "a pair of texts" if pairs else "a text"
    for i, text in enumerate(texts):
        parts = text if isinstance(text, tuple) else (text,)
        if len(parts) != (2 if pairs else 1) or not all(isinstance(p, str) for p in parts):
            raise DataError(f"Input {first_row + i} is {text!r}, not {expected}: this run's task reads "
                            f"{'two text columns' if pairs else 'one text column'}.")
    empty = [first_row + i for i, text in enumerate(texts)
             if not all(p.strip() for p in (text if isinstance(text, tuple) else (text,)))]
    if empty:
        raise DataError(f"{len(empty)} input(s) have an empty text (rows {empty[:10]}, counting from 0 after the "
                        f"header). Remove those rows or fill them in: an empty text has no label to predict.")


def load(run_dir: str | Path, round_index: int | None = None, overrides: Sequence[str] = ()) -> RunClassifier:
    """The classifier of a finished run: the reported round's (``round_index``: another kept round's)."""
    return RunClassifier(open_run(run_dir, round_index), overrides)
