"""The self-training rounds.

round 0      a classifier trained on the labelled set only, from the encoder of the round-0 stages
round k ≥ 1  the teachers (the teacher round's model, prompt teachers, ...) predict the whole pool and validation ->
             calibration -> teacher selection -> fusion -> the filters select pseudo-labels -> the task kind turns
             them into the student's training data -> a student (``student_init``) is fitted -> it is scored on
             validation (and test)
schedule     which round teaches the next, when the rounds stop, which round is reported, which models are kept
             (``schedule``); ``selftrain.max_rounds``, ``selftrain.patience`` and the precision gate
             (``selftrain.min_precision``) bound it

Rounds are compared on a validation metric only (``selftrain.monitor`` must be a ``val/`` metric); test scores
are recorded per round for reporting. Each round is a unit of work and of resume (``alpaca_lightning.once``).
Every choice is a plug-in (one class + one YAML); the loop only calls them, and plots and loggers observe it.
"""

from __future__ import annotations

import functools
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl

from alpaca_lightning.artifacts import atomic_write_json, is_complete, mark_complete, read_json
from alpaca_lightning.console import info
from alpaca_lightning.context import HiddenPoolLabels, RunContext
from alpaca_lightning.distributed import barrier, is_global_zero
from alpaca_lightning.errors import AlpacaError
from alpaca_lightning.killpoints import kill_point
from alpaca_lightning.once import produce_once, seeded_build
from alpaca_lightning.selftrain.calibration import Calibration, none_if_nan
from alpaca_lightning.selftrain.diagnostics import round_diagnostics
from alpaca_lightning.selftrain.events import PseudoLabelRound, RoundObserver, RoundOutputs
from alpaca_lightning.selftrain.filters import PseudoLabelFilter, SelectionContext, apply_filters
from alpaca_lightning.selftrain.fusion import Fused, Fusion, TeacherOutput
from alpaca_lightning.selftrain.plan import TrainingPlan
from alpaca_lightning.selftrain.prediction import Predictions
from alpaca_lightning.selftrain.prior import pool_prior
from alpaca_lightning.selftrain.pseudo_labels import PseudoLabelSet, select_pseudo_labels
from alpaca_lightning.selftrain.records import EVALUATED_SPLITS, RoundRecord
from alpaca_lightning.selftrain.schedule import Schedule
from alpaca_lightning.selftrain.settings import RoundSettings
from alpaca_lightning.selftrain.student_init import StudentInit
from alpaca_lightning.selftrain.stats import class_share_distance
from alpaca_lightning.selftrain.teacher_selection import TeacherEvidence, TeacherSelection
from alpaca_lightning.selftrain.teachers import Teacher


@dataclass(frozen=True)
class RoundPlugins:
    """The round loop's choices, each an instance of one option of its config group."""

    teachers: Sequence[Teacher]
    fusion: Fusion
    filters: Sequence[PseudoLabelFilter]
    schedule: Schedule
    calibration: Calibration
    teacher_selection: TeacherSelection
    student_init: StudentInit


class SelfTrainingLoop:
    def __init__(
        self,
        ctx: RunContext,
        plan: TrainingPlan,
        plugins: RoundPlugins,
        settings: RoundSettings,
        hidden: HiddenPoolLabels,
        observers: Sequence[RoundObserver] = (),
        stages: Sequence[Any] = (),
    ) -> None:
        self.ctx = ctx
        self.plan = plan
        self.plugins = plugins
        self.stages = list(stages)
        self.settings = settings
        self.hidden = hidden  # the pool's gold labels: diagnostics only
        self.observers = list(observers)
        self.stop_reason = ""
        if getattr(plugins.fusion, "uses_validation", False):
            info("fusion=weighted weighs teachers by validation accuracy, and validation also picks the best "
                 "round: the choice is optimistic. Give fusion.weights explicitly to keep validation independent.")

    @property
    def kind(self):
        return self.ctx.kind

    @property
    def label_names(self) -> list[str]:
        return self.ctx.label_names

    @property
    def val_gold(self) -> np.ndarray:
        return self.kind.gold(self.ctx.splits, "validation")

    def round_dir(self, k: int) -> Path:
        return self.ctx.run_dir / "rounds" / f"round_{k}"

    # --- the schedule ------------------------------------------------------------------------------------------
    def run(self) -> list[RoundRecord]:
        schedule, monitor = self.plugins.schedule, self.settings.monitor
        records: list[RoundRecord] = []
        best: RoundRecord | None = None  # by validation: the yardstick of patience and of schedule=best_teacher
        stale = 0
        for k in range(self.settings.max_rounds + 1):
            if k == 0:
                record = self._reuse(0) or self._round_zero()
            else:
                record = self._reuse(k) or self._round(k, schedule.teacher_round(records, best))
            if record is None:
                break
            records.append(record)
            schedule.round_finished(record, functools.partial(self._val_correct, k))
            improved = best is None or self.settings.better(record.score(monitor), best.score(monitor))
            best, stale = (record, 0) if improved else (best, stale + 1)
            self.stop_reason = self._stop_reason(record, improved, stale)  # before discarding: it may reject k
            self._discard_models(records, schedule.kept_models(records, best, k < self.settings.max_rounds))
            if self.stop_reason:
                break
        reported = schedule.reported(records, best)
        for record in records:
            record.best = record.round == reported.round
        return records

    def _stop_reason(self, record: RoundRecord, improved: bool, stale: int) -> str:
        if record.round == self.settings.max_rounds:
            return f"reached selftrain.max_rounds={self.settings.max_rounds}"
        reason = self.plugins.schedule.stop_reason(record, improved, self.settings.monitor)
        if not reason and self.settings.patience is not None and stale >= self.settings.patience:
            reason = f"no validation improvement for {stale} round(s) (selftrain.patience)"
        return reason

    def _discard_models(self, records: list[RoundRecord], keep: set[int]) -> None:
        if is_global_zero():
            for record in records:
                if record.round not in keep:
                    shutil.rmtree(self.round_dir(record.round) / "model", ignore_errors=True)
        barrier()

    def _val_correct(self, k: int) -> np.ndarray:
        """Whether round k's model got each gold-labelled validation example (or unit) right, from its saved
        predictions."""
        with np.load(self.round_dir(k) / "predictions.npz") as saved:
            predicted = saved["validation"].argmax(axis=-1)
        gold = self.val_gold
        return (predicted == gold)[gold >= 0]

    def _reuse(self, k: int) -> RoundRecord | None:
        """Round k's record when its folder is complete on disk (a resumed run)."""
        folder = self.round_dir(k)
        if not is_complete(folder):
            return None
        info(f"round {k}: complete on disk, skipped (resume)")
        return RoundRecord.from_dict(read_json(folder / "metrics.json"))

    # --- round 0: the labelled set alone ---------------------------------------------------------------------
    def _round_zero(self) -> RoundRecord:
        data = self.kind.training_data(self.ctx.datamodule, 0, None, self.settings.label_use, None)
        return self._train_student(0, None, data, self.plan.encoder_path, self.plan.supervised_lr,
                                   self.plan.supervised_epochs, None)

    # --- round k: teachers -> pseudo-labels -> student ----------------------------------------------------------
    def _round(self, k: int, teacher_round: int) -> RoundRecord | None:
        start = time.time()
        labelling = self._pseudo_label(k, teacher_round)
        if len(labelling.selected) == 0:
            self.stop_reason = (
                f"round {k}: no pool example passed the filters; loosen them (e.g. filters.confidence.threshold)"
            )
            return None
        if self._gated(k, labelling):
            return None
        data = self.kind.training_data(self.ctx.datamodule, k, labelling.selected, self.settings.label_use,
                                       self.settings.labelled_share)
        init_from = self.plugins.student_init.start(k, self.round_dir(teacher_round) / "model", labelling.selected,
                                                    self.ctx, self.plan, self.stages)
        record = self._train_student(k, teacher_round, data, init_from, self.plan.student_lr,
                                     self.plan.student_epochs, labelling, start)
        self.plugins.student_init.after_round(k, self.ctx)
        return record

    def _train_student(self, k: int, teacher_round: int | None, data: pl.LightningDataModule, init_from: str,
                       lr: float | None, epochs: int, labelling: PseudoLabelRound | None,
                       start: float | None = None) -> RoundRecord:
        """Fit round k's model on ``data``, score it, and write the round folder as one unit."""
        start = time.time() if start is None else start
        folder = self.round_dir(k)
        train_size = len(data.training_set())
        rate = lr if lr is not None else "model.classifier.optimizer.lr"
        info(f"round {k}: training on {train_size} examples (init: {init_from}; lr: {rate})")
        computed: dict[str, Any] = {}

        def train_and_score() -> dict[str, Any]:
            student = seeded_build(self.ctx.seed + k, lambda: self.ctx.make_classifier(init_from, lr))
            student.stage_name = f"round {k}"
            self.ctx.trainers.fit(f"round_{k}", max_epochs=epochs).fit(student, datamodule=data)
            metrics, probs = self._evaluate(student, data, folder.with_name(f".{folder.name}.shards"))
            record = RoundRecord(k, teacher_round, train_size, metrics,
                                 labelling.diagnostics if labelling else {}, round(time.time() - start, 2))
            computed.update(student=student, record=record, probs=probs)
            return computed

        def write(result: dict[str, Any], tmp: Path) -> None:
            result["student"].save_pretrained(tmp / "model")
            self.ctx.tokenizer.save_pretrained(tmp / "model")
            mark_complete(tmp / "model")
            np.savez(tmp / "predictions.npz", **result["probs"])
            if labelling is not None:
                labelling.selected.save(tmp / "pseudo_labels.csv", self.label_names)
            outputs = RoundOutputs(result["record"], labelling, self.label_names, self.val_gold)
            for observer in self.observers:
                observer.write_round(tmp, outputs)
            atomic_write_json(tmp / "metrics.json", result["record"].to_dict())

        produce_once(folder, train_and_score, write, f"round {k}")
        record: RoundRecord = computed["record"]
        if is_global_zero():
            for observer in self.observers:
                observer.round_done(folder, record)
        info(f"round {k}: {self.settings.monitor}={record.score(self.settings.monitor):.4f}"
             + (f", pseudo-labels {record.diagnostics['pseudo/count']}" if k else ""))
        return record

    def _gated(self, k: int, labelling: PseudoLabelRound) -> bool:
        """Whether the round's selection fails a gate (the round then does not run, and the run stops there): its
        expected precision is below selftrain.min_precision (a student trained on it would learn its teacher's
        errors), or its class shares lie further than selftrain.max_prior_distance from the pool's prior (it would
        teach the student a class balance that the pool does not have)."""
        self.stop_reason = self._imprecise(k, labelling) or self._skewed(k, labelling)
        if self.stop_reason:
            info(self.stop_reason)
        return bool(self.stop_reason)

    def _imprecise(self, k: int, labelling: PseudoLabelRound) -> str:
        expected = labelling.diagnostics["pseudo/expected_precision"]
        minimum = self.settings.min_precision
        if minimum is None or expected is None or expected >= minimum:
            return ""
        return (
            f"round {k}: the {len(labelling.selected)} selected pseudo-labels would be about {expected:.0%} right "
            f"({self.kind.precision_basis}), below selftrain.min_precision={minimum}; a student "
            f"trained on them learns the teacher's errors, so the run stops here. More labels give a better "
            f"teacher; selftrain.min_precision=null trains on them anyway."
        )

    def _skewed(self, k: int, labelling: PseudoLabelRound) -> str:
        distance = labelling.diagnostics["pseudo/prior_distance"]
        maximum = self.settings.max_prior_distance
        if maximum is None or not distance > maximum:
            return ""
        return (
            f"round {k}: the selected pseudo-labels' class shares lie {distance:.2f} (total variation) from the "
            f"pool's class prior, beyond selftrain.max_prior_distance={maximum}; a student trained on them would "
            f"learn a class balance the pool does not have, so the run stops here. Give task.class_prior if the "
            f"prior is known; selftrain.max_prior_distance=null trains on them anyway."
        )

    # --- pseudo-labelling ----------------------------------------------------------------------------------------
    def _pseudo_label(self, k: int, teacher_round: int) -> PseudoLabelRound:
        """Teachers predict pool and validation, fusion combines them, filters select; all of it is diagnosed."""
        diagnostics: dict[str, Any] = {}
        outputs = self._teacher_outputs(self.round_dir(teacher_round) / "model", diagnostics)
        calibrated = self.plugins.calibration.teachers(outputs, self.val_gold, diagnostics)
        # the yardstick a teacher is judged by comes from the classifier alone, never from the teacher itself
        classifier_prior = self.class_prior(calibrated[0]["pool"].probs)
        fused_with = self._fused_teachers(k, outputs, calibrated, classifier_prior, diagnostics)
        fusion = self.plugins.fusion
        fused_pool = fusion([o["pool"] for o in fused_with])
        fused_val = fusion([o["validation"] for o in fused_with])
        fused_pool, fused_val = self.plugins.calibration.fused(fused_pool, fused_val, self.val_gold, diagnostics)
        prior = self.class_prior(fused_pool.probs)  # from the teachers that selection let in
        context = SelectionContext(k, prior, self.kind.unit_groups(self.ctx.splits, "pool"))
        selected = select_pseudo_labels(fused_pool, self.plugins.filters, context, self.hidden.labels)
        diagnostics.update(selected.diagnostics(self.label_names))
        diagnostics.update(self.kind.pseudo_label_scores(selected, self.hidden.labels))
        diagnostics["pseudo/expected_precision"] = none_if_nan(self.kind.expected_precision(
            fused_pool.probs[selected.positions], fused_val, self.val_gold,
            lambda probs, keep, groups: apply_filters(self.plugins.filters, probs, replace(context, unit_groups=groups),
                                                      keep)))
        diagnostics.update(self._teacher_metrics("teacher", fused_pool, fused_val))
        diagnostics["pseudo/eligible"] = int(fused_pool.eligible.sum())
        diagnostics["pseudo/prior_distance"] = warn_if_skewed(k, selected, prior, self.label_names)
        quality = round_diagnostics(selected.labels, selected.gold, fused_val.probs, self.val_gold, self.label_names)
        diagnostics.update({key: none_if_nan(value) for key, value in quality.items()})
        kill_point(f"pseudo-labels {self.round_dir(k)}")  # fused and filtered, before the student exists
        return PseudoLabelRound(selected, fused_val.probs, prior, diagnostics)

    def _teacher_outputs(self, teacher_model: Path, diagnostics: dict[str, Any]) -> list[dict[str, TeacherOutput]]:
        """Each teacher's probabilities per split (pool, validation, and labelled for a teacher that never trained
        on it), tagged with its validation accuracy."""
        outputs = []
        for teacher in self.plugins.teachers:
            predictions = teacher.predict(self.ctx, self.plan, teacher_model)
            val = self.kind.score(predictions["validation"], self.val_gold, "val")
            diagnostics.update(prefixed(f"teacher_{teacher.name}", val))
            diagnostics.update(prefixed(f"teacher_{teacher.name}",
                                        self.kind.score(predictions["pool"], self.hidden.labels, "pool")))
            if teacher.trains_on_labelled:
                predictions = {split: p for split, p in predictions.items() if split != "labelled"}
            outputs.append(
                {split: TeacherOutput(teacher.name, p.probs, val.get("val/acc")) for split, p in predictions.items()}
            )
        return outputs

    def _fused_teachers(self, k: int, outputs: list[dict[str, TeacherOutput]],
                        calibrated: list[dict[str, TeacherOutput]], prior: np.ndarray,
                        diagnostics: dict[str, Any]) -> list[dict[str, TeacherOutput]]:
        """The teachers that round k fuses, as the fusion reads them (calibrated, then selected). A teacher that
        ends up alone is used as it predicts: its calibration would only move the filters' threshold."""
        evidence = [self._evidence(output) for output in calibrated]
        kept = self.plugins.teacher_selection.select(k, self.plugins.fusion, evidence, self.val_gold, prior,
                                                     diagnostics)
        return [calibrated[i] for i in kept] if len(kept) > 1 else [outputs[kept[0]]]

    def _evidence(self, output: dict[str, TeacherOutput]) -> TeacherEvidence:
        """One teacher as teacher selection judges it: every gold label it never learned from is in its gold."""
        gold_splits = ["validation"] + (["labelled"] if "labelled" in output else [])
        golds = {"validation": self.val_gold, "labelled": self.kind.gold(self.ctx.splits, "labelled")}
        return TeacherEvidence(output["validation"], output["pool"].probs,
                               np.concatenate([output[split].probs for split in gold_splits]),
                               np.concatenate([golds[split] for split in gold_splits]))

    def _teacher_metrics(self, prefix: str, pool: Fused, val: Fused) -> dict[str, Any]:
        metrics = self.kind.score(Predictions(pool.probs), self.hidden.labels, "pool")
        metrics.update(self.kind.score(Predictions(val.probs), self.val_gold, "val"))
        return prefixed(prefix, metrics)

    def class_prior(self, pool_probs: np.ndarray) -> np.ndarray:
        """The pool's class prior: task.class_prior, or the EM estimate from a teacher's pool predictions (the
        labelled prior is uniform under K labels per class, whatever the pool holds)."""
        return pool_prior(self.ctx.class_prior, pool_probs, self.kind.gold(self.ctx.splits, "labelled"))

    # --- scoring ---------------------------------------------------------------------------------------------------
    def _evaluate(self, model: pl.LightningModule, data: pl.LightningDataModule,
                  scratch: Path) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        """The model's metrics and probabilities on validation and test, through the one prediction path."""
        metrics: dict[str, float] = {}
        probs: dict[str, np.ndarray] = {}
        for split, prefix in EVALUATED_SPLITS.items():
            if len(data.prediction_set(split)) == 0:
                continue
            predictions = self.kind.predict(model, data, split, self.ctx.trainers.predict, scratch / split)
            probs[split] = predictions.probs
            metrics.update(self.kind.score(predictions, self.kind.gold(self.ctx.splits, split), prefix[:-1]))
        if self.settings.monitor not in metrics:
            raise AlpacaError(
                f"selftrain.monitor='{self.settings.monitor}' is not among the computed metrics {sorted(metrics)}."
            )
        barrier()  # every process has merged its shards before they go
        if is_global_zero():
            shutil.rmtree(scratch, ignore_errors=True)
        return metrics, probs


def warn_if_skewed(k: int, selected: PseudoLabelSet, prior: np.ndarray, label_names: list[str]) -> float:
    """Total variation distance between the selected class histogram and the pool's class prior (0: same shape,
    1: disjoint). A threshold filter on a teacher that is confident on one class only floods the student with
    that class and starves the others, so a large distance is worth a warning.
    Capping classes (distribution_alignment) does not bring missing classes back; a per-class top-k does."""
    if len(selected) == 0:
        return float("nan")
    counts = np.bincount(selected.labels, minlength=len(prior))
    distance = class_share_distance(selected.labels, prior)
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
