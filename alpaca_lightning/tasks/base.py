"""The task-kind interface. Sentence (and sentence-pair) classification is ``tasks/sentence.py``, token
classification ``tasks/tokens.py``; another kind is one class like them plus ``task.kind._target_`` in its task YAML.
A kind whose data module serves its units through ``unit_count`` and ``for_round`` inherits prediction and the
rounds' training data from here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from omegaconf import DictConfig

from alpaca_lightning.data.splits import TaskSplits
from alpaca_lightning.errors import ConfigError
from alpaca_lightning.selftrain.calibration import expected_precision
from alpaca_lightning.selftrain.fusion import Fused
from alpaca_lightning.selftrain.prediction import Predictions, predict_split
from alpaca_lightning.selftrain.pseudo_labels import LabelUse, PseudoLabelSet


class TaskKind:
    name = "task kind"
    unit = "sentence"  # what one prediction row is; stages, teachers and student inits name the units they serve
    setup_hint = ""  # where a config that sets the kind's plug-ins lives, for error messages

    # --- data ------------------------------------------------------------------------------------------------------
    def load_splits(self, task_cfg: DictConfig, split_cfg: dict[str, Any], seed: int) -> TaskSplits:
        """Read the task's sources and draw the few-label splits (labelled, pool, validation, test)."""
        raise NotImplementedError

    def hide_pool_labels(self, splits: TaskSplits) -> tuple[TaskSplits, np.ndarray]:
        """The splits with the pool's gold removed, and the pool's unit gold apart (diagnostics only)."""
        raise NotImplementedError

    def gold(self, splits: TaskSplits, split: str) -> np.ndarray:
        """The gold class of every unit of a split, in prediction-row order (-1 where unknown)."""
        raise NotImplementedError

    def make_datamodule(self, data: Callable[..., pl.LightningDataModule], splits: TaskSplits, tokenizer: Any,
                        seed: int) -> pl.LightningDataModule:
        """Tokenization and batching; ``data`` is the ``data`` config group as a partial."""
        raise NotImplementedError

    # --- model -----------------------------------------------------------------------------------------------------
    def make_classifier(self, classifier: Callable[..., pl.LightningModule], **kwargs: Any) -> pl.LightningModule:
        """The classifier module; ``classifier`` is ``model.classifier`` as a partial."""
        raise NotImplementedError

    def predict(self, module: pl.LightningModule, datamodule: pl.LightningDataModule, split: str,
                make_trainer: Callable[..., pl.Trainer], out_dir: Path) -> Predictions:
        """One class distribution per unit of ``split``, through the one prediction path."""
        return predict_split(module, datamodule, split, make_trainer, out_dir)

    def score(self, predictions: Predictions, gold: np.ndarray, prefix: str) -> dict[str, Any]:
        """The metrics of unit predictions against unit gold, named ``<prefix>/<metric>``."""
        raise NotImplementedError

    def unit_groups(self, splits: TaskSplits, split: str) -> np.ndarray | None:
        """The example each unit of a split belongs to, for filters that keep whole examples (None: a unit is an
        example)."""
        return None

    # what expected_precision measures, for the precision gate's message
    precision_basis = "the teacher's confidence, calibrated on validation"

    def expected_precision(self, selected_probs: np.ndarray, fused_val: Fused, val_gold: np.ndarray,
                           select: Callable[[np.ndarray, np.ndarray, np.ndarray | None], np.ndarray]) -> float:
        """How often the selected pseudo-labels (``selected_probs``: the fused teacher on them) should be right,
        read on validation (``select(probs, keep, unit_groups)`` applies the round's filters to other
        predictions); the precision gate (selftrain.min_precision) compares it. NaN for an empty selection."""
        return expected_precision(selected_probs, fused_val.probs, val_gold)

    def pseudo_label_scores(self, selected: PseudoLabelSet, pool_gold: np.ndarray) -> dict[str, Any]:
        """Diagnostics of a round's kept pseudo-labels beyond the per-unit ones (hidden gold: diagnostics only)."""
        return {}

    # --- using a trained model (alpaca-predict, alpaca_lightning.load, alpaca-serve) ------------------------------
    def read_example(self, value: Any) -> Any:
        """One input example as the kind's split holds it (a text here; a cell of a file, or a request)."""
        return value

    def inference_split(self, examples: list) -> Any:
        """Unlabelled examples as a split the kind's data module predicts."""
        raise NotImplementedError

    def per_example(self, probs: np.ndarray, split: Any) -> Any:
        """Unit probabilities regrouped per example (a unit is an example here: unchanged)."""
        return probs

    def use_command(self, run_dir: Path) -> str:
        """The command that uses the run's reported model, printed at the end of a run and in report.md."""
        return f"alpaca-predict {run_dir} texts.csv"  # Python: alpaca_lightning.load(run_dir).predict(texts)

    # --- self-training ---------------------------------------------------------------------------------------------
    def training_data(self, datamodule: pl.LightningDataModule, round_index: int, selected: PseudoLabelSet | None,
                      use: LabelUse, labelled_share: float | None) -> pl.LightningDataModule:
        """The data of one round's fit: the labelled set, plus the selected pseudo-labelled units as ``use`` says
        (None: the labelled set alone, round 0)."""
        if selected is None:
            return datamodule.for_round(round_index)
        return datamodule.for_round(round_index, **selected.training_fields(use), labelled_share=labelled_share)


# What to use instead of a plug-in that does not serve a task kind's units, per config group.
UNIT_ALTERNATIVES = {
    "stages": "Drop it: stages=[] or stages=[mlm] (masked-LM on the task's own text serves every task kind).",
    "teachers": "Use teachers=[classifier].",
    "student_init": "Use student_init=continue or student_init=reset.",
}


def check_units(part: Any, kind: TaskKind, group: str) -> None:
    """Refuse, before any training, a plug-in (``units``: the units it serves, sentences by default) that cannot
    work on the task kind's units."""
    units = getattr(part, "units", ("sentence",))
    if kind.unit not in units:
        name = getattr(part, "name", type(part).__name__)
        raise ConfigError(f"{group} '{name}' works on whole sentences, but task kind '{kind.name}' predicts one "
                          f"{kind.unit} per unit. {UNIT_ALTERNATIVES[group]} {kind.setup_hint}".rstrip())
