"""Task kinds: what an example and a prediction look like. The round loop, fusion, filters, calibration, the
schedule and resume see a prediction as rows of class distributions ("units"), and the task kind says what a unit
is (a sentence, a word, ...), how it is read, batched, modelled, scored and turned into training targets."""

from alpaca_lightning.tasks.base import TaskKind, check_units
from alpaca_lightning.tasks.sentence import SentenceClassification
from alpaca_lightning.tasks.tokens import TokenClassification

__all__ = ["TaskKind", "SentenceClassification", "TokenClassification", "check_units"]
