"""The self-training rounds.

round 0      a classifier trained on the labelled set only, from the encoder of the round-0 stages
round k ≥ 1  the teachers (the teacher round's model, prompt teachers, ...) predict the whole pool and validation ->
             their labels are fused -> filters select pseudo-labels -> the DataModule installs them (hard or soft)
             -> a student is fitted -> it is scored on validation (and test)
teacher      ``selftrain.teacher=last``: each round's student teaches the next (the Noisy Student / STraTA chain);
             ``best``: the best round so far teaches, and a round that does not improve ends the run (another round
             would re-train on the same teacher's same pseudo-labels, i.e. draw a new seed and keep the luckier one)
stop         after ``max_rounds`` (a fixed schedule), or earlier by ``patience`` rounds without a better score, or
             where the precision gate (``min_precision``) refuses a round's selection
reported     ``selftrain.select_round=last``: the last round that ran (the schedule, with the gate as its guard);
             ``monitor``: the round with the best validation ``selftrain.monitor``, ties to the earlier round

Rounds are compared on a validation metric only (``selftrain.monitor`` must be a ``val/`` metric); test scores
are recorded per round for reporting. Each round is a unit of work and of resume (``alpaca_lightning.once``).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from pytorch_lightning.loggers import Logger

from alpaca_lightning.artifacts import atomic_write_json, is_complete, mark_complete, read_json
from alpaca_lightning.console import info
from alpaca_lightning.context import HiddenPoolLabels, RunContext
from alpaca_lightning.data.datamodule import check_labelled_share
from alpaca_lightning.data.splits import TextSplit
from alpaca_lightning.distributed import barrier, is_global_zero
from alpaca_lightning.errors import AlpacaError
from alpaca_lightning.killpoints import kill_point
from alpaca_lightning.models.base import ClassifierModule
from alpaca_lightning.once import produce_once, seeded_build
from alpaca_lightning.selftrain.calibration import CALIBRATIONS, expected_precision, fit_temperature, temper
from alpaca_lightning.selftrain.diagnostics import expected_calibration_error, round_diagnostics
from alpaca_lightning.selftrain.filters import PseudoLabelFilter, SelectionContext, top_per_class
from alpaca_lightning.selftrain.fusion import Fused, Fusion, TeacherOutput, helpful_teachers
from alpaca_lightning.selftrain.prediction import Predictions, classification_metrics, predict_split
from alpaca_lightning.selftrain.prior import pool_prior
from alpaca_lightning.selftrain.pseudo_labels import LabelUse, PseudoLabelSet, select_pseudo_labels
from alpaca_lightning.selftrain.records import EVALUATED_SPLITS, VAL_PREFIX, RoundRecord
from alpaca_lightning.selftrain.run_report import ROUND_FIGURES, write_round_plots
from alpaca_lightning.selftrain.teachers import Teacher
from alpaca_lightning.stages import Stage, run_stages

STUDENT_INITS = ("reset", "continue", "stages")
TEACHER_CHOICES = ("last", "best")
ROUND_CHOICES = ("last", "monitor")
LOWER_IS_BETTER = ("nll", "loss", "ece")


@dataclass(frozen=True)
class RoundSettings:
    """``conf/selftrain/default.yaml`` is the one place with defaults: every field is required here."""

    max_rounds: int
    patience: int | None
    teacher: str
    student_init: str
    supervised_epochs: int
    student_epochs: int
    labelled_share: float | None
    min_precision: float | None
    supervised_lr: float | None
    student_lr: float | None
    monitor: str
    min_improvement: float
    select_round: str
    keep_models: str
    labels: str
    temperature: float
    weight_by_confidence: bool
    stage_pseudo_per_class: int
    calibration: str
    teacher_selection: str

    @property
    def label_use(self) -> LabelUse:
        return LabelUse(self.labels, self.temperature, self.weight_by_confidence)

    @property
    def minimize(self) -> bool:
        """Losses and calibration errors are better when lower (val/nll); accuracy and F1 when higher."""
        return self.monitor.endswith(LOWER_IS_BETTER)

    def better(self, score: float, best: float) -> bool:
        """Whether ``score`` beats ``best`` by more than ``min_improvement``."""
        gain = best - score if self.minimize else score - best
        return gain > self.min_improvement

    def __post_init__(self) -> None:
        _ = self.label_use  # validates the label options before any training
        choices = {"student_init": (self.student_init, STUDENT_INITS), "teacher": (self.teacher, TEACHER_CHOICES),
                   "select_round": (self.select_round, ROUND_CHOICES),
                   "keep_models": (self.keep_models, ("best", "all")),
                   "calibration": (self.calibration, CALIBRATIONS),
                   "teacher_selection": (self.teacher_selection, ("all", "validation"))}
        for key, (value, allowed) in choices.items():
            if value not in allowed:
                raise AlpacaError(f"selftrain.{key} must be one of {allowed}, got '{value}'.")
        if not self.monitor.startswith(VAL_PREFIX):
            raise AlpacaError(
                f"selftrain.monitor='{self.monitor}' would choose the best round on a non-validation metric; the "
                f"round must be chosen on validation only (e.g. selftrain.monitor=val/acc or val/f1_macro). Test "
                f"scores are reported for every round in rounds.csv."
            )
        for key, lr in {"supervised_lr": self.supervised_lr, "student_lr": self.student_lr}.items():
            if lr is not None and not lr > 0:
                raise AlpacaError(f"selftrain.{key} must be > 0 or null (the model's optimizer lr), got {lr}.")
        check_labelled_share(self.labelled_share)
        if self.min_precision is not None and not 0 < self.min_precision <= 1:
            raise AlpacaError(
                f"selftrain.min_precision must lie in (0, 1] (e.g. 0.8), or be null to train on any selection, got "
                f"{self.min_precision}."
            )
        if self.stage_pseudo_per_class < 0:
            raise AlpacaError(f"selftrain.stage_pseudo_per_class must be >= 0, got {self.stage_pseudo_per_class}.")
        if self.teacher == "best" and self.select_round == "last":
            raise AlpacaError(
                "selftrain.teacher=best ends the run at the first round that does not improve on validation, so its "
                "last round is one that validation rejected; set selftrain.select_round=monitor with it."
            )
        if self.patience is not None and self.patience < 1:
            raise AlpacaError(f"selftrain.patience must be >= 1 or null (run every round), got {self.patience}.")


@dataclass
class PseudoLabelRound:
    """What a round's pseudo-labelling produced: the selection, the fused teacher on validation, diagnostics."""

    selected: PseudoLabelSet
    teacher_val: np.ndarray
    class_prior: np.ndarray
    diagnostics: dict[str, Any]


class SelfTrainingLoop:
    def __init__(
        self,
        ctx: RunContext,
        teachers: Sequence[Teacher],
        fusion: Fusion,
        filters: Sequence[PseudoLabelFilter],
        settings: RoundSettings,
        hidden: HiddenPoolLabels,
        round_loggers: Sequence[Logger] = (),
        stages: Sequence[Stage] = (),
    ) -> None:
        if settings.student_init == "stages" and not stages:
            raise AlpacaError("selftrain.student_init=stages re-runs the round-0 stages for each student, but "
                              "stages=[] is empty; set e.g. stages=[contrastive,probe] or another student_init.")
        self.ctx = ctx
        self.stages = list(stages)
        self.teachers = list(teachers)
        self.fusion = fusion
        self.filters = list(filters)
        self.settings = settings
        self.hidden = hidden  # the pool's gold labels: diagnostics only
        self.round_loggers = list(round_loggers)
        self.stop_reason = ""
        if getattr(fusion, "uses_validation", False):
            info("fusion=weighted weighs teachers by validation accuracy, and validation also picks the best "
                 "round: the choice is optimistic. Give fusion.weights explicitly to keep validation independent.")

    @property
    def dm(self):
        return self.ctx.datamodule

    @property
    def label_names(self) -> list[str]:
        return self.ctx.label_names

    @property
    def val_gold(self) -> np.ndarray:
        return self.ctx.splits.validation.labels

    def round_dir(self, k: int) -> Path:
        return self.ctx.run_dir / "rounds" / f"round_{k}"

    # --- the schedule ------------------------------------------------------------------------------------------
    def run(self) -> list[RoundRecord]:
        records: list[RoundRecord] = []
        best: RoundRecord | None = None  # by validation: the teacher under teacher=best, and patience's yardstick
        stale = 0
        monitor = self.settings.monitor
        for k in range(self.settings.max_rounds + 1):
            record = self._load_or_run(k, self._teacher_round(records, best))
            if record is None:
                break
            records.append(record)
            improved = best is None or self.settings.better(record.score(monitor), best.score(monitor))
            best, stale = (record, 0) if improved else (best, stale + 1)
            self._discard_models(records, self._reported(records, best), last_needed=k < self.settings.max_rounds)
            if k == self.settings.max_rounds:
                self.stop_reason = f"reached selftrain.max_rounds={self.settings.max_rounds}"
            elif self.settings.teacher == "best" and not improved:
                self.stop_reason = (f"round {k} did not improve {monitor}; with selftrain.teacher=best the next round "
                                    f"would re-train on the same teacher's pseudo-labels")
            elif self.settings.patience is not None and stale >= self.settings.patience:
                self.stop_reason = f"no validation improvement for {stale} round(s) (selftrain.patience)"
            else:
                continue
            break
        reported = self._reported(records, best)
        for record in records:
            record.best = record.round == reported.round
        return records

    def _reported(self, records: list[RoundRecord], best: RoundRecord) -> RoundRecord:
        """The round whose model and test scores the run reports (``selftrain.select_round``)."""
        return records[-1] if self.settings.select_round == "last" else best

    def _teacher_round(self, records: list[RoundRecord], best: RoundRecord | None) -> int | None:
        if not records:
            return None
        return records[-1].round if self.settings.teacher == "last" else best.round

    def _discard_models(self, records: list[RoundRecord], best: RoundRecord, last_needed: bool) -> None:
        """keep_models=best keeps the reported round's model and the one the next round's teacher needs."""
        if self.settings.keep_models == "best" and is_global_zero():
            keep = {best.round} | ({records[-1].round} if last_needed else set())
            for record in records:
                if record.round not in keep:
                    shutil.rmtree(self.round_dir(record.round) / "model", ignore_errors=True)
        barrier()

    # --- one round ---------------------------------------------------------------------------------------------
    def _load_or_run(self, k: int, teacher_round: int | None) -> RoundRecord | None:
        folder = self.round_dir(k)
        if is_complete(folder):
            info(f"round {k}: complete on disk, skipped (resume)")
            return RoundRecord.from_dict(read_json(folder / "metrics.json"))
        start = time.time()
        labelling = None if teacher_round is None else self._pseudo_label(k, teacher_round)
        if labelling is not None and len(labelling.selected) == 0:
            self.stop_reason = (
                f"round {k}: no pool example passed the filters; loosen them (e.g. filters.confidence.threshold)"
            )
            return None
        if labelling is not None and self._too_imprecise(k, labelling):
            return None
        if labelling is None:
            self.dm.start_round(0)
            init_from = self.ctx.encoder_path
        else:
            self.dm.start_round(k, **labelling.selected.training_fields(self.settings.label_use),
                                labelled_share=self.settings.labelled_share)
            init_from = self._student_init(k, teacher_round, labelling.selected)
        train_size = len(self.dm.training_set())
        lr = self.ctx.supervised_lr if labelling is None else self.ctx.student_lr
        rate = lr if lr is not None else "model.classifier.optimizer.lr"
        info(f"round {k}: training on {train_size} examples (init: {init_from}; lr: {rate})")

        def train_and_score() -> tuple[ClassifierModule, RoundRecord, dict[str, np.ndarray]]:
            student = seeded_build(self.ctx.seed + k, lambda: self.ctx.make_classifier(init_from, lr))
            student.stage_name = f"round {k}"
            epochs = self.settings.supervised_epochs if labelling is None else self.settings.student_epochs
            self.ctx.trainers.fit(f"round_{k}", max_epochs=epochs).fit(student, datamodule=self.dm)
            metrics, probs = self._evaluate(student, folder.with_name(f".{folder.name}.shards"))
            record = RoundRecord(k, teacher_round, train_size, metrics,
                                 labelling.diagnostics if labelling else {}, round(time.time() - start, 2))
            return student, record, probs

        def write(result: tuple[ClassifierModule, RoundRecord, dict[str, np.ndarray]], tmp: Path) -> None:
            student, record, probs = result
            student.save_pretrained(tmp / "model")
            self.ctx.tokenizer.save_pretrained(tmp / "model")
            mark_complete(tmp / "model")
            np.savez(tmp / "predictions.npz", **probs)
            if labelling is not None:
                self._write_pseudo_labels(tmp, k, labelling)
            atomic_write_json(tmp / "metrics.json", record.to_dict())

        if produce_once(folder, train_and_score, write, f"round {k}"):
            self._log_round(folder)
        self._discard_student_stages(k)
        record = RoundRecord.from_dict(read_json(folder / "metrics.json"))
        info(f"round {k}: {self.settings.monitor}={record.score(self.settings.monitor):.4f}"
             + (f", pseudo-labels {record.diagnostics['pseudo/count']}" if k else ""))
        return record

    def _too_imprecise(self, k: int, labelling: PseudoLabelRound) -> bool:
        """Whether the selection's expected precision is below selftrain.min_precision (the round then does not run:
        a student trained on it would learn its teacher's errors; README "When the rounds cannot pay")."""
        expected = labelling.diagnostics["pseudo/expected_precision"]
        minimum = self.settings.min_precision
        if minimum is None or expected is None or expected >= minimum:
            return False
        count = len(labelling.selected)
        self.stop_reason = (
            f"round {k}: the {count} selected pseudo-labels would be about {expected:.0%} right (the teacher's "
            f"confidence, calibrated on validation), below selftrain.min_precision={minimum}; a student trained on "
            f"them learns the teacher's errors, so the run stops here. More labels give a better "
            f"teacher; selftrain.min_precision=null trains on them anyway."
        )
        info(self.stop_reason)
        return True

    def _student_init(self, k: int, teacher_round: int, selected: PseudoLabelSet) -> str:
        """Where round k's student starts: its teacher (continue), the round-0 encoder (reset), or the round-0
        stages re-run from the backbone with the most confident pseudo-labels as extra labelled data (stages)."""
        if self.settings.student_init == "continue":
            return str(self.round_dir(teacher_round) / "model")
        if self.settings.student_init == "reset":
            return self.ctx.encoder_path
        top = top_per_class(selected.probs, np.ones(len(selected), dtype=bool),
                            lambda cls, members: min(members, self.settings.stage_pseudo_per_class))
        splits = self.ctx.splits
        pseudo = TextSplit([splits.pool.texts[i] for i in selected.positions[top]], selected.labels[top])
        grown = replace(splits, labelled=TextSplit.concat([splits.labelled, pseudo]))
        info(f"round {k}: re-running the round-0 stages on {len(splits.labelled)} labelled + {len(pseudo)} "
             f"pseudo-labelled examples")
        stage_ctx = replace(self.ctx, splits=grown, datamodule=self.ctx.make_datamodule(grown), seed=self.ctx.seed + k,
                            encoder_path=self.ctx.backbone_path or self.ctx.encoder_path)
        return run_stages(self.stages, stage_ctx, root=self._student_stages_dir(k)).encoder_path

    def _student_stages_dir(self, k: int) -> Path:
        return self.ctx.run_dir / "stages" / f"round_{k}"

    def _discard_student_stages(self, k: int) -> None:
        """Once round k is complete its student's stage encoders are never read again (~90 MB each)."""
        if is_global_zero():
            shutil.rmtree(self._student_stages_dir(k), ignore_errors=True)
        barrier()

    def _pseudo_label(self, k: int, teacher_round: int) -> PseudoLabelRound:
        """Teachers predict pool and validation, fusion combines them, filters select; all of it is diagnosed."""
        diagnostics: dict[str, Any] = {}
        outputs = self._fused_teachers(k, self._teacher_outputs(self.round_dir(teacher_round) / "model", diagnostics),
                                       diagnostics)
        fused_pool = self.fusion([o["pool"] for o in outputs])
        fused_val = self.fusion([o["validation"] for o in outputs])
        if self.settings.calibration == "temperature":
            fused_pool, fused_val = self._calibrate(fused_pool, fused_val, diagnostics)
        prior = self.class_prior(fused_pool.probs)
        selected = select_pseudo_labels(fused_pool, self.filters, SelectionContext(k, prior), self.hidden.labels)
        diagnostics.update(selected.diagnostics(self.label_names))
        diagnostics["pseudo/expected_precision"] = none_if_nan(
            expected_precision(fused_pool.probs[selected.positions], fused_val.probs, self.val_gold))
        diagnostics.update(self._teacher_metrics("teacher", fused_pool, fused_val))
        diagnostics["pseudo/eligible"] = int(fused_pool.eligible.sum())
        diagnostics["pseudo/prior_distance"] = warn_if_skewed(k, selected, prior, self.label_names)
        quality = round_diagnostics(selected.labels, selected.gold, fused_val.probs, self.val_gold, self.label_names)
        diagnostics.update({key: none_if_nan(value) for key, value in quality.items()})
        kill_point(f"pseudo-labels {self.round_dir(k)}")  # fused and filtered, before the student exists
        return PseudoLabelRound(selected, fused_val.probs, prior, diagnostics)

    def _calibrate(self, pool: Fused, val: Fused, diagnostics: dict[str, Any]) -> tuple[Fused, Fused]:
        """Temperature scaling fitted on validation; the ECE before it is kept beside the one after
        (``teacher/val_ece``, in-sample: the same validation set fitted the temperature)."""
        temperature = fit_temperature(val.probs, self.val_gold)
        diagnostics["calibration/temperature"] = temperature
        diagnostics["teacher/val_ece_uncalibrated"] = none_if_nan(expected_calibration_error(val.probs, self.val_gold))
        return (Fused(temper(pool.probs, temperature), pool.eligible),
                Fused(temper(val.probs, temperature), val.eligible))

    def _teacher_outputs(self, teacher_model: Path, diagnostics: dict[str, Any]) -> list[dict[str, TeacherOutput]]:
        """Each teacher's pool and validation probabilities, tagged with its validation accuracy."""
        outputs = []
        for teacher in self.teachers:
            predictions = teacher.predict(self.ctx, teacher_model)
            val = classification_metrics(predictions["validation"], self.val_gold, "val")
            diagnostics.update(prefixed(f"teacher_{teacher.name}", val))
            diagnostics.update(prefixed(f"teacher_{teacher.name}",
                                        classification_metrics(predictions["pool"], self.hidden.labels, "pool")))
            outputs.append(
                {split: TeacherOutput(teacher.name, p.probs, val.get("val/acc")) for split, p in predictions.items()}
            )
        return outputs

    def _fused_teachers(self, k: int, outputs: list[dict[str, TeacherOutput]],
                        diagnostics: dict[str, Any]) -> list[dict[str, TeacherOutput]]:
        """The teachers that this round fuses, as the fusion reads them. With ``calibration=teachers`` each teacher is
        temperature-scaled on validation, so that an over-confident one cannot outvote a better one; a teacher that
        ends up alone is used as it predicts (its calibration would only move the filters' threshold, which is
        ``calibration=temperature``). ``teacher_selection=validation`` keeps a teacher after the first only where it
        lowers the fused validation NLL."""
        if self.settings.calibration == "teachers" and len(outputs) > 1:
            calibrated = [self._calibrate_teacher(o, diagnostics) for o in outputs]
        else:
            calibrated = outputs
        kept = list(range(len(outputs)))
        if self.settings.teacher_selection == "validation" and len(outputs) > 1:
            kept = helpful_teachers(self.fusion, [o["validation"] for o in calibrated], self.val_gold)
            diagnostics["teachers/fused"] = "+".join(outputs[i]["pool"].name for i in kept)
            info(f"round {k}: fusing {diagnostics['teachers/fused']} (a teacher joins only where it lowers the "
                 f"fused validation NLL; selftrain.teacher_selection=all fuses every teacher)")
        return [calibrated[i] for i in kept] if len(kept) > 1 else [outputs[kept[0]]]

    def _calibrate_teacher(self, output: dict[str, TeacherOutput],
                           diagnostics: dict[str, Any]) -> dict[str, TeacherOutput]:
        """One teacher's temperature, fitted on its validation predictions, applied to all of its predictions."""
        name = output["validation"].name
        temperature = fit_temperature(output["validation"].probs, self.val_gold)
        diagnostics[f"calibration/temperature_{name}"] = temperature
        return {split: replace(o, probs=temper(o.probs, temperature)) for split, o in output.items()}

    def _teacher_metrics(self, prefix: str, pool: Fused, val: Fused) -> dict[str, Any]:
        metrics = classification_metrics(Predictions(pool.probs), self.hidden.labels, "pool")
        metrics.update(classification_metrics(Predictions(val.probs), self.val_gold, "val"))
        return prefixed(prefix, metrics)

    def _write_pseudo_labels(self, folder: Path, k: int, labelling: PseudoLabelRound) -> None:
        selected = labelling.selected
        selected.save(folder / "pseudo_labels.csv", self.label_names)
        prior = dict(zip(self.label_names, labelling.class_prior.tolist()))
        write_round_plots(folder, self.label_names, selected.labels, selected.gold, labelling.teacher_val,
                          self.val_gold, prior, k)

    def class_prior(self, pool_probs: np.ndarray) -> np.ndarray:
        """The pool's class prior: task.class_prior, or the EM estimate from the fused teacher's pool predictions
        (the labelled prior is uniform under K labels per class, whatever the pool holds)."""
        return pool_prior(self.ctx.class_prior, pool_probs, self.ctx.splits.labelled.labels)

    def _evaluate(self, model: ClassifierModule, scratch: Path) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        """The student's metrics and probabilities on validation and test, through the one prediction path."""
        metrics: dict[str, float] = {}
        probs: dict[str, np.ndarray] = {}
        for split, prefix in EVALUATED_SPLITS.items():
            if len(self.dm.prediction_set(split)) == 0:
                continue
            predictions = predict_split(model, self.dm, split, self.ctx.trainers.predict, scratch / split)
            probs[split] = predictions.probs
            metrics.update(classification_metrics(predictions, getattr(self.ctx.splits, split).labels, prefix[:-1]))
        if self.settings.monitor not in metrics:
            raise AlpacaError(
                f"selftrain.monitor='{self.settings.monitor}' is not among the computed metrics {sorted(metrics)}."
            )
        barrier()  # every process has merged its shards before they go
        if is_global_zero():
            shutil.rmtree(scratch, ignore_errors=True)
        return metrics, probs

    def _log_round(self, folder: Path) -> None:
        if not is_global_zero():
            return
        record = read_json(folder / "metrics.json")
        numeric = {f"round/{key}": v for key, v in record.items() if isinstance(v, (int, float)) and v is not None}
        figures = [folder / name for name in ROUND_FIGURES if (folder / name).is_file()]
        for logger in self.round_loggers:
            logger.log_metrics(numeric, step=record["round"])
            if figures and hasattr(logger, "log_image"):  # W&B shows the round's plots beside its metrics
                logger.log_image("round/figures", [str(f) for f in figures], step=record["round"],
                                 caption=[ROUND_FIGURES[f.name] for f in figures])
            logger.save()


def warn_if_skewed(k: int, selected: PseudoLabelSet, prior: np.ndarray, label_names: list[str]) -> float:
    """Total variation distance between the selected class histogram and the pool's class prior (0: same shape,
    1: disjoint). A threshold filter on a teacher that is confident on one class only floods the student with
    that class (seen on AG News: 302 Sports, 1 Business, 0 Sci/Tech), so a large distance is worth a warning.
    Capping classes (distribution_alignment) does not bring missing classes back; a per-class top-k does."""
    if len(selected) == 0:
        return float("nan")
    counts = np.bincount(selected.labels, minlength=len(prior))
    distance = float(0.5 * np.abs(counts / len(selected) - prior).sum())
    if distance > 0.3:
        histogram = ", ".join(f"{count} {name}" for name, count in zip(label_names, counts))
        info(
            f"round {k}: the pseudo-labels are skewed against the pool's class prior ({histogram}; distance "
            f"{distance:.2f}). Consider filters=[class_balanced], which keeps the top k of every predicted class."
        )
    return distance


def prefixed(prefix: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """{"val/acc": x} -> {"teacher/val_acc": x}: one namespace per teacher in the round records and loggers."""
    return {f"{prefix}/{key.replace('/', '_')}": value for key, value in metrics.items()}


def none_if_nan(value: Any) -> Any:
    """JSON has no NaN: an undefined metric (e.g. precision of a class that got no pseudo-label) is stored as null."""
    return None if isinstance(value, float) and value != value else value
