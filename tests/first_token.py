"""A toy second task kind: it labels the first word of each text (here with its text's class), reads the encoder's
hidden state at that word instead of pooling the sentence, and scores "first-token accuracy". It exists to show
that a task kind plugs into the round loop through ``task.kind`` alone: nothing outside this module changes."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from alpaca_lightning.models.base import encoder_inputs
from alpaca_lightning.models.classifier import SequenceClassifier
from alpaca_lightning.selftrain.prediction import Predictions
from alpaca_lightning.tasks import SentenceClassification

FIRST_WORD = 1  # position 0 holds [CLS]


class FirstTokenClassifier(SequenceClassifier):
    def features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(**encoder_inputs(batch)).last_hidden_state[:, FIRST_WORD]


class FirstTokenTagging(SentenceClassification):
    name = "first-token tagging"
    built: list[str] = []  # the classifier classes this kind built, in order (read by the test)

    def make_classifier(self, classifier: Any, **kwargs: Any) -> FirstTokenClassifier:
        module = functools.partial(FirstTokenClassifier, *classifier.args, **classifier.keywords)(**kwargs)
        self.built.append(type(module).__name__)
        return module

    def score(self, predictions: Predictions, gold: np.ndarray, prefix: str) -> dict[str, Any]:
        known = gold >= 0
        if not known.any():
            return {}
        right = predictions.labels[known] == gold[known]
        return {f"{prefix}/acc": float(right.mean()), f"{prefix}/first_token_acc": float(right.mean()),
                f"{prefix}/n": int(known.sum())}
