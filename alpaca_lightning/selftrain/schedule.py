"""The schedule of the rounds: which round teaches the next, when the rounds stop early, which round the run
reports, and which round models stay on disk. One class + one YAML in conf/schedule/ per option.

last          each round's student teaches the next (the Noisy Student / STraTA chain); the last round that ran
              is reported (a fixed schedule, the precision gate guarding it)
monitor       the same chain; the round with the best validation ``selftrain.monitor`` is reported (ties: earlier)
best_teacher  the best round so far teaches; a round that does not improve ends the run (the next would re-train on
              the same teacher's pseudo-labels, i.e. draw a new seed), and the best round is reported
guarded       the chain of ``last``, with a paired check: a student that is worse than its teacher round on the
              validation examples (exact sign test) ends the run and is not reported; its teacher is

``selftrain.max_rounds`` and ``selftrain.patience`` bound every schedule; a validation set of K examples per class
moves accuracy by several points per example, which is why ``last`` is the default.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from alpaca_lightning.errors import AlpacaError
from alpaca_lightning.selftrain.records import RoundRecord
from alpaca_lightning.selftrain.stats import sign_test


class Schedule:
    def __init__(self, keep_all_models: bool = False) -> None:
        # False: only the reported round's model and the one the next teacher needs stay (each ~90 MB)
        self.keep_all_models = keep_all_models

    def round_finished(self, record: RoundRecord, val_correct: Callable[[], np.ndarray]) -> None:
        """Called once per round that ran (or was resumed), in order; ``val_correct()`` reads whether its model got
        each gold-labelled validation example right."""

    def teacher_round(self, records: list[RoundRecord], best: RoundRecord) -> int:
        """The round whose model teaches the next round (``best``: the best by validation so far)."""
        return records[-1].round

    def reported(self, records: list[RoundRecord], best: RoundRecord) -> RoundRecord:
        """The round whose model and test scores the run reports."""
        return records[-1]

    def stop_reason(self, record: RoundRecord, improved: bool, monitor: str) -> str:
        """Why the rounds stop after ``record`` under this schedule ("" to go on)."""
        return ""

    def kept_models(self, records: list[RoundRecord], best: RoundRecord, last_needed: bool) -> set[int]:
        """Rounds whose model folders stay on disk; ``last_needed``: the last round still has to teach."""
        if self.keep_all_models:
            return {record.round for record in records}
        return {self.reported(records, best).round} | ({records[-1].round} if last_needed else set())

    @property
    def chosen_by(self) -> str:
        """How the reported round is chosen, for results.json and the report."""
        return "last"


class LastRound(Schedule):
    """The chain: each student teaches the next round; the last round that ran is reported."""


class BestOnValidation(Schedule):
    """The chain; the round with the best validation score is reported."""

    def reported(self, records: list[RoundRecord], best: RoundRecord) -> RoundRecord:
        return best

    @property
    def chosen_by(self) -> str:
        return "monitor"


class BestTeacher(BestOnValidation):
    """The best round so far teaches; the first round that does not improve ends the run."""

    def teacher_round(self, records: list[RoundRecord], best: RoundRecord) -> int:
        return best.round

    def stop_reason(self, record: RoundRecord, improved: bool, monitor: str) -> str:
        if improved:
            return ""
        return (f"round {record.round} did not improve {monitor}; with schedule=best_teacher the next round "
                f"would re-train on the same teacher's pseudo-labels")


class GuardedLastRound(LastRound):
    """The chain, reporting the last round, unless a student is worse than its teacher round on validation: on
    the examples where the two differ, the student loses more than it gains with a one-sided sign-test p-value
    below ``alpha``. That round ends the run and is neither reported nor kept; its teacher is reported.

    A few dozen validation labels cannot tell two rounds a point apart, and then the last round is reported (the
    gates before each round guard it); a clear collapse they can tell, and it never reaches the user."""

    def __init__(self, alpha: float = 0.05, keep_all_models: bool = False) -> None:
        super().__init__(keep_all_models)
        if not 0 < alpha < 1:
            raise AlpacaError(f"schedule.alpha must lie in (0, 1) (e.g. 0.05), got {alpha}.")
        self.alpha = alpha
        self.correct: dict[int, np.ndarray] = {}
        self.rejected: set[int] = set()

    def round_finished(self, record: RoundRecord, val_correct: Callable[[], np.ndarray]) -> None:
        self.correct[record.round] = val_correct()

    def stop_reason(self, record: RoundRecord, improved: bool, monitor: str) -> str:
        teacher = record.teacher_round
        if teacher is None:
            return ""
        lost, gained, p_value = sign_test(self.correct[teacher], self.correct[record.round])
        if not p_value < self.alpha:
            return ""
        self.rejected.add(record.round)
        return (f"round {record.round} is worse than its teacher, round {teacher}, on validation: it gets {lost} "
                f"examples wrong that round {teacher} got right and only {gained} the other way (sign test p="
                f"{p_value:.3f} < schedule.alpha={self.alpha}); round {teacher} is reported")

    def reported(self, records: list[RoundRecord], best: RoundRecord) -> RoundRecord:
        return [record for record in records if record.round not in self.rejected][-1]

    def kept_models(self, records: list[RoundRecord], best: RoundRecord, last_needed: bool) -> set[int]:
        """A rejected round teaches no one: its model goes (unless ``keep_all_models``)."""
        kept = super().kept_models(records, best, last_needed)
        return kept if self.keep_all_models else kept - self.rejected

    @property
    def chosen_by(self) -> str:
        return "guarded"
