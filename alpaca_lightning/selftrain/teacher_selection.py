"""Teacher selection: which of a round's teachers the fusion combines. One class + one YAML in
conf/teacher_selection/ per rule; the first teacher of ``teachers=[...]`` (the round's classifier) always stays."""

from __future__ import annotations

from typing import Any

import numpy as np

from alpaca_lightning.console import info
from alpaca_lightning.selftrain.fusion import Fusion, TeacherOutput, helpful_teachers


class TeacherSelection:
    def select(self, k: int, fusion: Fusion, val_outputs: list[TeacherOutput], val_gold: np.ndarray,
               diagnostics: dict[str, Any]) -> list[int]:
        """Positions (in ``teachers`` order) of the teachers that round ``k`` fuses."""
        raise NotImplementedError


class AllTeachers(TeacherSelection):
    """Every teacher, every round."""

    def select(self, k: int, fusion: Fusion, val_outputs: list[TeacherOutput], val_gold: np.ndarray,
               diagnostics: dict[str, Any]) -> list[int]:
        return list(range(len(val_outputs)))


class ValidationSelection(TeacherSelection):
    """A teacher after the first joins only where it lowers the fused validation NLL (recorded as
    ``teachers/fused``): zero-shot label sentences that describe a task's labels badly are then left out."""

    def select(self, k: int, fusion: Fusion, val_outputs: list[TeacherOutput], val_gold: np.ndarray,
               diagnostics: dict[str, Any]) -> list[int]:
        if len(val_outputs) < 2:
            return [0]
        kept = helpful_teachers(fusion, val_outputs, val_gold)
        diagnostics["teachers/fused"] = "+".join(val_outputs[i].name for i in kept)
        info(f"round {k}: fusing {diagnostics['teachers/fused']} (a teacher joins only where it lowers the "
             f"fused validation NLL; teacher_selection=all fuses every teacher)")
        return kept
