"""A lexicon teacher for token tasks: the entity strings of the labelled set, matched in other sentences.

It errs differently from the classifier: it knows nothing about context, so it finds a known name wherever it
occurs (also where the classifier, trained on a few sentences, misses it) and never finds an unknown one. A matched
word gets its entity tag with ``match_confidence``; every other word gets O with ``other_o_confidence``, an opinion
weak enough that fusion leaves those words to the classifier. Ambiguous strings take their most frequent type;
the longest match wins, left to right. Teacher selection fuses it only where it helps on validation.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from alpaca_lightning.context import RunContext
from alpaca_lightning.errors import AlpacaError
from alpaca_lightning.selftrain.plan import TrainingPlan
from alpaca_lightning.selftrain.prediction import Predictions
from alpaca_lightning.selftrain.teachers import TEACHER_SPLITS, Teacher

Lexicon = dict[tuple[str, ...], str]


def entity_spans(tags: list[str]) -> list[tuple[int, int, str]]:
    """(start, end exclusive, type) of each entity in one sentence's IOB2 or BIOES tags."""
    spans, start, kind = [], None, None
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, name = tag.partition("-")
        continues = prefix in ("I", "E") and name == kind and start is not None
        if not continues and start is not None:
            spans.append((start, i, kind))
            start, kind = None, None
        if prefix in ("B", "S") or (prefix in ("I", "E") and not continues):
            start, kind = i, name
        if prefix in ("E", "S") and start is not None:
            spans.append((start, i + 1, kind))
            start, kind = None, None
    return spans


def build_lexicon(words: list[list[str]], tags: list[list[str]], lowercase: bool) -> Lexicon:
    votes: dict[tuple[str, ...], Counter] = defaultdict(Counter)
    for sentence, sentence_tags in zip(words, tags):
        for start, end, kind in entity_spans(sentence_tags):
            votes[key(sentence[start:end], lowercase)][kind] += 1
    return {string: counts.most_common(1)[0][0] for string, counts in votes.items()}


def key(words: list[str], lowercase: bool) -> tuple[str, ...]:
    return tuple(w.lower() for w in words) if lowercase else tuple(words)


def span_tags(kind: str, length: int, names: list[str]) -> list[str]:
    if f"S-{kind}" in names:  # BIOES
        return [f"S-{kind}"] if length == 1 else [f"B-{kind}", *[f"I-{kind}"] * (length - 2), f"E-{kind}"]
    return [f"B-{kind}", *[f"I-{kind}"] * (length - 1)]


def match(sentence: list[str], lexicon: Lexicon, longest: int, lowercase: bool) -> list[tuple[int, int, str]]:
    """Non-overlapping matches, longest first at each position, left to right."""
    found, i = [], 0
    while i < len(sentence):
        for length in range(min(longest, len(sentence) - i), 0, -1):
            kind = lexicon.get(key(sentence[i:i + length], lowercase))
            if kind is not None:
                found.append((i, i + length, kind))
                i += length
                break
        else:
            i += 1
    return found


class LexiconTeacher(Teacher):
    name = "lexicon"
    units = ("word",)  # it tags words

    def __init__(self, match_confidence: float = 0.9, other_o_confidence: float = 0.5, lowercase: bool = False):
        for name, value in (("match_confidence", match_confidence), ("other_o_confidence", other_o_confidence)):
            if not 0.0 < value < 1.0:
                raise AlpacaError(f"teachers.lexicon.{name} must lie strictly between 0 and 1, got {value}.")
        self.match_confidence = match_confidence
        self.other_o_confidence = other_o_confidence
        self.lowercase = lowercase

    def predict(self, ctx: RunContext, plan: TrainingPlan, teacher_model: Path) -> dict[str, Predictions]:
        names = list(ctx.splits.label_names)
        labelled = ctx.splits.labelled
        lexicon = build_lexicon(labelled.words, [[names[t] for t in tags] for tags in labelled.labels],
                                self.lowercase)
        return {split: Predictions(self.tag_probs(getattr(ctx.splits, split).words, lexicon, names))
                for split in TEACHER_SPLITS}

    def tag_probs(self, sentences: list[list[str]], lexicon: Lexicon, names: list[str]) -> np.ndarray:
        index = {name: i for i, name in enumerate(names)}
        longest = max((len(k) for k in lexicon), default=0)
        rows = []
        for sentence in sentences:
            tags = ["O"] * len(sentence)
            matched = np.zeros(len(sentence), dtype=bool)
            for start, end, kind in match(sentence, lexicon, longest, self.lowercase):
                tags[start:end] = span_tags(kind, end - start, names)
                matched[start:end] = True
            for tag, hit in zip(tags, matched):
                confidence = self.match_confidence if hit else self.other_o_confidence
                row = np.full(len(names), (1.0 - confidence) / (len(names) - 1))
                row[index[tag]] = confidence
                rows.append(row)
        return np.asarray(rows, dtype=np.float32).reshape(-1, len(names))
