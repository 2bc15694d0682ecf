"""The self-training rounds.

round 0      a classifier trained on the labelled set only (the supervised-only baseline)
round k ≥ 1  the teachers (the best round's model, prompt teachers) predict the whole pool and validation ->
             their labels are fused -> filters select pseudo-labels -> the DataModule installs them (hard or soft)
             -> a fresh student is fitted -> it is scored on validation (and test)
stop         after ``max_rounds``, or after ``patience`` rounds without a better validation score

Each round is a unit of work and of resume: its folder gets a COMPLETE marker as the last step, and a re-run in
the same output folder skips completed rounds. Selection uses validation only; test scores are recorded per round
for reporting.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.loggers import Logger
from transformers import PreTrainedTokenizerBase

from alpaca_lightning.artifacts import atomic_directory, atomic_write_json, is_complete, mark_complete, read_json
from alpaca_lightning.console import info
from alpaca_lightning.data.datamodule import SelfTrainingDataModule
from alpaca_lightning.distributed import barrier, is_global_zero
from alpaca_lightning.models.classifier import SequenceClassifier
from alpaca_lightning.selftrain.diagnostics import round_diagnostics
from alpaca_lightning.selftrain.filters import PseudoLabelFilter, SelectionContext
from alpaca_lightning.selftrain.fusion import Fusion, TeacherOutput
from alpaca_lightning.selftrain.prediction import Predictions, classification_metrics, predict_split
from alpaca_lightning.selftrain.pseudo_labels import LabelUse, PseudoLabelSet, select_pseudo_labels
from alpaca_lightning.selftrain.run_report import ROUND_FIGURES, write_round_plots
from alpaca_lightning.selftrain.teachers import Teacher, TeacherContext
from alpaca_lightning.trainer import TrainerFactory

STUDENT_INITS = ("reset", "continue")


@dataclass
class RoundSettings:
    max_rounds: int = 3
    patience: int = 1
    student_init: str = "reset"
    supervised_epochs: int = 20
    student_epochs: int = 3
    monitor: str = "val/acc"
    min_improvement: float = 0.0
    keep_models: str = "best"
    labels: str = "hard"
    temperature: float = 1.0
    weight_by_confidence: bool = False

    @property
    def label_use(self) -> LabelUse:
        return LabelUse(self.labels, self.temperature, self.weight_by_confidence)

    def __post_init__(self) -> None:
        _ = self.label_use  # validates the label options before any training
        if self.student_init not in STUDENT_INITS:
            raise ValueError(f"selftrain.student_init must be one of {STUDENT_INITS}, got '{self.student_init}'.")
        if self.keep_models not in ("best", "all"):
            raise ValueError(f"selftrain.keep_models must be 'best' or 'all', got '{self.keep_models}'.")


class SelfTrainingLoop:
    def __init__(
        self,
        datamodule: SelfTrainingDataModule,
        make_classifier: Callable[[str], SequenceClassifier],
        trainers: TrainerFactory,
        teachers: Sequence[Teacher],
        fusion: Fusion,
        teacher_context: TeacherContext,
        filters: Sequence[PseudoLabelFilter],
        settings: RoundSettings,
        run_dir: Path,
        backbone_path: str,
        tokenizer: PreTrainedTokenizerBase,
        seed: int,
        round_loggers: Sequence[Logger] = (),
    ) -> None:
        self.dm = datamodule
        self.make_classifier = make_classifier
        self.trainers = trainers
        self.teachers = list(teachers)
        self.fusion = fusion
        self.teacher_context = teacher_context
        self.filters = list(filters)
        self.settings = settings
        self.run_dir = Path(run_dir)
        self.backbone_path = backbone_path
        self.tokenizer = tokenizer
        self.seed = seed
        self.round_loggers = list(round_loggers)
        self.label_names = datamodule.splits.label_names
        self.stop_reason = ""

    def round_dir(self, k: int) -> Path:
        return self.run_dir / "rounds" / f"round_{k}"

    def run(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        best: dict[str, Any] | None = None
        stale = 0
        for k in range(self.settings.max_rounds + 1):
            teacher_dir = None if best is None else self.round_dir(best["round"]) / "model"
            record = self._load_or_run(k, teacher_dir)
            if record is None:
                break
            records.append(record)
            monitor = self.settings.monitor
            if best is None or record[monitor] > best[monitor] + self.settings.min_improvement:
                previous, best, stale = best, record, 0
                if previous is not None:
                    self._discard_model(previous["round"])
            else:
                stale += 1
                self._discard_model(k)
            if stale >= self.settings.patience and k < self.settings.max_rounds:
                self.stop_reason = f"no validation improvement for {stale} round(s) (selftrain.patience)"
                break
        else:
            self.stop_reason = self.stop_reason or f"reached selftrain.max_rounds={self.settings.max_rounds}"
        for record in records:
            record["best"] = record["round"] == best["round"]
        return records

    def _load_or_run(self, k: int, teacher_dir: Path | None) -> dict[str, Any] | None:
        folder = self.round_dir(k)
        if is_complete(folder):
            info(f"round {k}: complete on disk, skipped (resume)")
            return read_json(folder / "metrics.json")
        start = time.time()
        pl.seed_everything(self.seed + k, workers=True, verbose=False)
        record: dict[str, Any] = {"round": k, "teacher_round": None}
        if k == 0:
            self.dm.start_round(0)
            init_from = self.backbone_path
        else:
            selected = self._pseudo_label(k, teacher_dir, folder, record)
            if len(selected) == 0:
                self.stop_reason = (
                    f"round {k}: no pool example passed the filters; loosen them (e.g. filters.confidence.threshold)"
                )
                return None
            self.dm.start_round(k, **selected.training_fields(self.settings.label_use))
            init_from = str(teacher_dir) if self.settings.student_init == "continue" else self.backbone_path
        record["train_size"] = len(self.dm.training_set())
        info(f"round {k}: training on {record['train_size']} examples (init: {init_from})")

        # Re-seed right before the student exists: prediction may or may not have drawn from this process's RNG
        # (it runs in child processes under ddp_fork/ddp_spawn), and the student must not depend on that.
        pl.seed_everything(self.seed + k, workers=True, verbose=False)
        student = self.make_classifier(init_from)
        student.stage_name = f"round {k}"
        epochs = self.settings.supervised_epochs if k == 0 else self.settings.student_epochs
        self.trainers.fit(f"round_{k}", max_epochs=epochs).fit(student, datamodule=self.dm)
        record.update(self._evaluate(student, folder))
        record["wall_time_s"] = round(time.time() - start, 2)
        self._commit(folder, student, record)
        info(
            f"round {k}: {self.settings.monitor}={record[self.settings.monitor]:.4f}"
            + (f", pseudo-labels {record['pseudo/count']}" if k else "")
        )
        return record

    def _pseudo_label(self, k: int, teacher_dir: Path, folder: Path, record: dict[str, Any]) -> PseudoLabelSet:
        """Teachers predict pool and validation, fusion combines them, filters select; all of it is diagnosed."""
        outputs = self._teacher_outputs(teacher_dir, folder, record)
        fused_pool = self.fusion([o["pool"] for o in outputs])
        fused_val = self.fusion([o["validation"] for o in outputs])
        pool_gold = self.dm.splits.pool.labels  # diagnostics only: never reaches training
        context = SelectionContext(round_index=k, class_prior=self.class_prior())
        selected = select_pseudo_labels(fused_pool, self.filters, context, pool_gold)
        record["teacher_round"] = int(teacher_dir.parent.name.split("_")[1])
        record.update(selected.diagnostics(self.label_names))
        record.update(prefixed("teacher", classification_metrics(Predictions(fused_pool.probs), pool_gold, "pool")))
        record.update(prefixed("teacher", classification_metrics(Predictions(fused_val.probs), self.val_gold, "val")))
        record["pseudo/eligible"] = int(fused_pool.eligible.sum())
        record["pseudo/prior_distance"] = self._warn_if_skewed(k, selected, context.class_prior)
        diagnostics = round_diagnostics(
            selected.labels, selected.gold, fused_val.probs, self.val_gold, self.label_names
        )
        record.update({key: none_if_nan(value) for key, value in diagnostics.items()})
        if is_global_zero():
            selected.save(folder / "pseudo_labels.csv", self.label_names)
            prior = dict(zip(self.label_names, context.class_prior.tolist()))
            write_round_plots(folder, self.label_names, selected.labels, selected.gold, fused_val.probs, self.val_gold,
                              prior, k)
        return selected

    def _teacher_outputs(
        self, teacher_dir: Path, folder: Path, record: dict[str, Any]
    ) -> list[dict[str, TeacherOutput]]:
        """Each teacher's pool and validation probabilities, tagged with its validation accuracy."""
        outputs = []
        for teacher in self.teachers:
            predictions = teacher.predict(self.teacher_context, teacher_dir)
            val = classification_metrics(predictions["validation"], self.val_gold, "val")
            record.update(prefixed(f"teacher_{teacher.name}", val))
            record.update(
                prefixed(f"teacher_{teacher.name}",
                         classification_metrics(predictions["pool"], self.dm.splits.pool.labels, "pool"))
            )
            outputs.append(
                {split: TeacherOutput(teacher.name, p.probs, val.get("val/acc")) for split, p in predictions.items()}
            )
        return outputs

    def _warn_if_skewed(self, k: int, selected: PseudoLabelSet, prior: np.ndarray) -> float:
        """Total variation distance between the selected class histogram and the labelled prior (0: same shape,
        1: disjoint). A threshold filter on a teacher that is confident on one class only floods the student with
        that class (seen on AG News: 302 Sports, 1 Business, 0 Sci/Tech), so a large distance is worth a warning.
        Capping classes (distribution_alignment) does not bring missing classes back; a per-class top-k does."""
        if len(selected) == 0:
            return float("nan")
        counts = np.bincount(selected.labels, minlength=len(prior))
        distance = float(0.5 * np.abs(counts / len(selected) - prior).sum())
        if distance > 0.3:
            histogram = ", ".join(f"{count} {name}" for name, count in zip(self.label_names, counts))
            info(
                f"round {k}: the pseudo-labels are skewed against the labelled class prior ({histogram}; distance "
                f"{distance:.2f}). Consider filters=[class_balanced], which keeps the top k of every predicted class."
            )
        return distance

    @property
    def val_gold(self) -> np.ndarray:
        return self.dm.splits.validation.labels

    def class_prior(self) -> np.ndarray:
        counts = np.bincount(self.dm.splits.labelled.labels, minlength=len(self.label_names)).astype(float)
        return counts / counts.sum()

    def _evaluate(self, model: SequenceClassifier, folder: Path) -> dict[str, Any]:
        metrics: dict[str, Any] = {}
        for split in ("validation", "test"):
            if len(self.dm.prediction_set(split)) == 0:
                continue
            predictions = predict_split(model, self.dm, split, self.trainers.predict, folder / "predictions" / split)
            prefix = "val" if split == "validation" else "test"
            metrics.update(classification_metrics(predictions, getattr(self.dm.splits, split).labels, prefix))
        if self.settings.monitor not in metrics:
            raise ValueError(
                f"selftrain.monitor='{self.settings.monitor}' is not among the computed metrics {sorted(metrics)}."
            )
        return metrics

    def _commit(self, folder: Path, student: SequenceClassifier, record: dict[str, Any]) -> None:
        """Model first, then metrics, then the COMPLETE marker: a crash leaves no round that looks finished."""
        if is_global_zero():
            with atomic_directory(folder / "model") as tmp:
                student.save_pretrained(tmp)
                self.tokenizer.save_pretrained(tmp)
            atomic_write_json(folder / "metrics.json", record)
            mark_complete(folder)
            numeric = {f"round/{key}": v for key, v in record.items() if isinstance(v, (int, float)) and v is not None}
            figures = [folder / name for name in ROUND_FIGURES if (folder / name).is_file()]
            for logger in self.round_loggers:
                logger.log_metrics(numeric, step=record["round"])
                if figures and hasattr(logger, "log_image"):  # W&B shows the round's plots beside its metrics
                    logger.log_image("round/figures", [str(f) for f in figures], step=record["round"],
                                     caption=[ROUND_FIGURES[f.name] for f in figures])
                logger.save()
        barrier()

    def _discard_model(self, k: int) -> None:
        if self.settings.keep_models == "best" and is_global_zero():
            shutil.rmtree(self.round_dir(k) / "model", ignore_errors=True)
        barrier()



def prefixed(prefix: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """{"val/acc": x} -> {"teacher/val_acc": x}: one namespace per teacher in the round records and loggers."""
    return {f"{prefix}/{key.replace('/', '_')}": value for key, value in metrics.items()}


def none_if_nan(value: Any) -> Any:
    """JSON has no NaN: an undefined metric (e.g. precision of a class that got no pseudo-label) is stored as null."""
    return None if isinstance(value, float) and value != value else value
