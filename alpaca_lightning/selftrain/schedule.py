"""The schedule of the rounds: which round teaches the next, when the rounds stop early, which round the run
reports, and which round models stay on disk. One class + one YAML in conf/schedule/ per option.

last          each round's student teaches the next (the Noisy Student / STraTA chain); the last round that ran
              is reported (a fixed schedule, the precision gate guarding it)
monitor       the same chain; the round with the best validation ``selftrain.monitor`` is reported (ties: earlier)
best_teacher  the best round so far teaches; a round that does not improve ends the run (the next would re-train on
              the same teacher's pseudo-labels, i.e. draw a new seed), and the best round is reported

``selftrain.max_rounds`` and ``selftrain.patience`` bound every schedule; a validation set of K examples per class
moves accuracy by several points per example, which is why ``last`` is the default.
"""

from __future__ import annotations

from alpaca_lightning.selftrain.records import RoundRecord


class Schedule:
    def __init__(self, keep_all_models: bool = False) -> None:
        # False: only the reported round's model and the one the next teacher needs stay (each ~90 MB)
        self.keep_all_models = keep_all_models

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
