"""Student initialisation: where the student of round k >= 1 starts. One class + one YAML in conf/student_init/.

continue  from its teacher's model (the chain refines one model)
reset     from the round-0 encoder (each student forgets its teacher's head and fine-tuning)
stages    the round-0 stages re-run from the backbone, with the most confident pseudo-labels as extra labelled data
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from alpaca_lightning.console import info
from alpaca_lightning.context import RunContext
from alpaca_lightning.data.splits import TextSplit
from alpaca_lightning.distributed import barrier, is_global_zero
from alpaca_lightning.errors import AlpacaError
from alpaca_lightning.selftrain.filters import top_per_class
from alpaca_lightning.selftrain.plan import TrainingPlan
from alpaca_lightning.selftrain.pseudo_labels import PseudoLabelSet
from alpaca_lightning.stages import run_stages


class StudentInit:
    units = ("sentence", "word")  # the units of the task kinds it serves

    def check(self, stages: Sequence) -> None:
        """Fail before any training when the run cannot serve this initialisation."""

    def start(self, k: int, teacher_model: Path, selected: PseudoLabelSet, ctx: RunContext, plan: TrainingPlan,
              stages: Sequence) -> str:
        """A ``from_pretrained`` folder for round k's student."""
        raise NotImplementedError

    def after_round(self, k: int, ctx: RunContext) -> None:
        """Round k is complete: drop what only its student's start needed."""


class ContinueFromTeacher(StudentInit):
    def start(self, k: int, teacher_model: Path, selected: PseudoLabelSet, ctx: RunContext, plan: TrainingPlan,
              stages: Sequence) -> str:
        return str(teacher_model)


class ResetToRoundZero(StudentInit):
    def start(self, k: int, teacher_model: Path, selected: PseudoLabelSet, ctx: RunContext, plan: TrainingPlan,
              stages: Sequence) -> str:
        return plan.encoder_path


class RerunStages(StudentInit):
    """The round-0 stages from the backbone, on the labelled set plus the ``pseudo_per_class`` most confident
    pseudo-labels of each class, written under ``<run>/stages/round_<k>/`` and removed once the round is complete."""

    units = ("sentence",)  # it grows the labelled set by whole pseudo-labelled texts

    def __init__(self, pseudo_per_class: int = 16) -> None:
        if pseudo_per_class < 0:
            raise AlpacaError(f"student_init.pseudo_per_class must be >= 0, got {pseudo_per_class}.")
        self.pseudo_per_class = pseudo_per_class

    def check(self, stages: Sequence) -> None:
        if not stages:
            raise AlpacaError("student_init=stages re-runs the round-0 stages for each student, but stages=[] is "
                              "empty; set e.g. stages=[contrastive,probe] or another student_init.")

    def start(self, k: int, teacher_model: Path, selected: PseudoLabelSet, ctx: RunContext, plan: TrainingPlan,
              stages: Sequence) -> str:
        top = top_per_class(selected.probs, np.ones(len(selected), dtype=bool),
                            lambda cls, members: min(members, self.pseudo_per_class))
        splits = ctx.splits
        pseudo = TextSplit([splits.pool.texts[i] for i in selected.positions[top]], selected.labels[top])
        grown = replace(splits, labelled=TextSplit.concat([splits.labelled, pseudo]))
        info(f"round {k}: re-running the round-0 stages on {len(splits.labelled)} labelled + {len(pseudo)} "
             f"pseudo-labelled examples")
        stage_ctx = replace(ctx, splits=grown, datamodule=ctx.make_datamodule(grown), seed=ctx.seed + k)
        return run_stages(stages, stage_ctx, ctx.backbone_path, root=self._folder(k, ctx))

    def after_round(self, k: int, ctx: RunContext) -> None:
        if is_global_zero():  # each stage encoder is ~90 MB, and no later round reads it
            shutil.rmtree(self._folder(k, ctx), ignore_errors=True)
        barrier()

    @staticmethod
    def _folder(k: int, ctx: RunContext) -> Path:
        return ctx.run_dir / "stages" / f"round_{k}"
