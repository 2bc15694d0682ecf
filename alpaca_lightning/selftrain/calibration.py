"""Temperature scaling (Guo et al., 2017) of a teacher's probabilities before any filter reads a confidence.

A fine-tuned teacher trained on a few labels is over-confident, so a confidence threshold
keeps most of the pool at the teacher's accuracy. One temperature, fitted on validation by negative log-likelihood,
changes no argmax and rescales every confidence: ``softmax(log p / T)``. T > 1 softens an over-confident teacher.

``calibration`` (conf/calibration/) chooses where a round applies it: ``teachers`` (each teacher before fusion),
``temperature`` (the fused teacher) or ``none``. Both places, the similarity teacher and the expected precision of
a selection go through one mechanism, ``scale_to_validation``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from alpaca_lightning.selftrain.diagnostics import expected_calibration_error

# log-spaced candidates: a grid search is exact enough for one parameter and cannot diverge on 16 examples
TEMPERATURES = np.exp(np.linspace(np.log(0.25), np.log(50.0), 241))


def temper(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(probs) / temperature)``, row-wise."""
    logits = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    tempered = np.exp(logits)
    return tempered / tempered.sum(axis=1, keepdims=True)


def nll(probs: np.ndarray, gold: np.ndarray) -> float:
    """Mean negative log-likelihood of the gold classes (every row's gold must be known)."""
    return float(-np.log(np.clip(probs[np.arange(len(gold)), gold], 1e-12, None)).mean())


def fit_temperature(probs: np.ndarray, gold: np.ndarray) -> float:
    """The temperature with the lowest validation NLL (rows with gold -1 are left out); 1.0 without gold."""
    gold = np.asarray(gold)
    known = gold >= 0
    if not known.any():
        return 1.0
    probs, gold = np.asarray(probs)[known], gold[known]
    losses = [nll(temper(probs, t), gold) for t in TEMPERATURES]
    return float(TEMPERATURES[int(np.argmin(losses))])


def expected_precision(selected_probs: np.ndarray, val_probs: np.ndarray, val_gold: np.ndarray) -> float:
    """How often a selection's argmax labels should be right: the mean top probability over the selected rows
    after temperature scaling fitted on validation (an over-confident teacher's raw confidence over-states it).
    NaN for an empty selection."""
    if len(selected_probs) == 0:
        return float("nan")
    _, (_, selected) = scale_to_validation(val_probs, val_gold, selected_probs)
    return float(selected.max(axis=1).mean())


def scale_to_validation(val_probs: np.ndarray, val_gold: np.ndarray, *others: np.ndarray) -> tuple[float, list]:
    """The one calibration mechanism: fit a temperature on ``val_probs`` against ``val_gold``, then apply it to
    ``val_probs`` and to each of ``others`` (the same teacher's other splits). Returns (temperature, tempered)."""
    temperature = fit_temperature(val_probs, val_gold)
    return temperature, [temper(p, temperature) for p in (val_probs, *others)]


class Calibration:
    """Where temperature scaling applies in a round: to each teacher before fusion, to the fused teacher after it,
    or nowhere. One class + one YAML in conf/calibration/ per option; the round loop calls both hooks."""

    def teachers(self, outputs: list[dict[str, Any]], val_gold: np.ndarray, diagnostics: dict[str, Any]) -> list:
        """Each teacher's {split: TeacherOutput}, as fusion and teacher selection should read them."""
        return outputs

    def fused(self, pool: Any, val: Any, val_gold: np.ndarray, diagnostics: dict[str, Any]) -> tuple[Any, Any]:
        """The fused teacher's (pool, validation) ``Fused`` predictions, as the filters should read them."""
        return pool, val


class NoCalibration(Calibration):
    """Every teacher's confidences as it predicts them."""


class FusedTemperature(Calibration):
    """One temperature for the fused teacher, fitted on validation after fusion. The report keeps its validation
    ECE before scaling (``teacher/val_ece_uncalibrated``) beside the one after (in-sample: the same set fits it)."""

    def fused(self, pool: Any, val: Any, val_gold: np.ndarray, diagnostics: dict[str, Any]) -> tuple[Any, Any]:
        temperature, (val_probs, pool_probs) = scale_to_validation(val.probs, val_gold, pool.probs)
        diagnostics["calibration/temperature"] = temperature
        diagnostics["teacher/val_ece_uncalibrated"] = none_if_nan(expected_calibration_error(val.probs, val_gold))
        return replace(pool, probs=pool_probs), replace(val, probs=val_probs)


class TeacherTemperatures(Calibration):
    """Each teacher its own temperature before fusion, so that an over-confident teacher cannot outvote a better
    one under ``fusion=product``. A lone teacher is left as it is (its scale would only move the filters'
    threshold, which is what ``calibration=temperature`` does)."""

    def teachers(self, outputs: list[dict[str, Any]], val_gold: np.ndarray, diagnostics: dict[str, Any]) -> list:
        if len(outputs) < 2:
            return outputs
        return [self._scaled(output, val_gold, diagnostics) for output in outputs]

    @staticmethod
    def _scaled(output: dict[str, Any], val_gold: np.ndarray, diagnostics: dict[str, Any]) -> dict[str, Any]:
        splits = [split for split in output if split != "validation"]
        temperature, (val, *rest) = scale_to_validation(output["validation"].probs, val_gold,
                                                        *(output[split].probs for split in splits))
        diagnostics[f"calibration/temperature_{output['validation'].name}"] = temperature
        scaled = {split: replace(output[split], probs=probs) for split, probs in zip(splits, rest)}
        return {**scaled, "validation": replace(output["validation"], probs=val)}


def none_if_nan(value: Any) -> Any:
    """JSON has no NaN: an undefined metric (e.g. precision of a class that got no pseudo-label) is stored as null."""
    return None if isinstance(value, float) and value != value else value
