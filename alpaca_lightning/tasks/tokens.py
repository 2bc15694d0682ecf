"""Token classification (named entities): one example is a sentence, one unit is one of its words.

The round loop sees word rows: the classifier teacher predicts a tag distribution per word, fusion combines per
word, a filter keeps or drops single words (a dropped word is left out of the student's loss: partial annotation),
and the class prior (the O tag's share included) is estimated over the pool's words. Scoring is entity-level, in
seqeval's strict mode: ``f1`` (micro, the headline), per-type precision, recall and F1, and ``acc`` over words.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig
from seqeval.metrics import classification_report
from seqeval.scheme import IOB2, IOBES

from alpaca_lightning.data.splits import TaskSplits
from alpaca_lightning.data.tokens import (
    TokenSplit, WordTags, build_token_splits, check_scheme, entity_types_in, map_tags, tag_names, word_tags,
)
from alpaca_lightning.errors import DataError
from alpaca_lightning.models.token_classifier import TokenClassifier
from alpaca_lightning.selftrain.calibration import nll
from alpaca_lightning.selftrain.fusion import Fused
from alpaca_lightning.selftrain.prediction import Predictions
from alpaca_lightning.selftrain.pseudo_labels import PseudoLabelSet
from alpaca_lightning.tasks.base import TaskKind

SEQEVAL_SCHEMES = {"IOB2": IOB2, "BIOES": IOBES}  # seqeval names BIOES "IOBES"


class TokenClassification(TaskKind):
    name = "token classification"
    unit = "word"
    setup_hint = "(experiment=ner selects the stages and teachers that serve words.)"

    def __init__(self, scheme: str = "IOB2", invalid_tags: str = "refuse") -> None:
        check_scheme(scheme)
        self.scheme = scheme
        self.invalid_tags = invalid_tags
        self.tag_names: list[str] = []

    def read_example(self, value: Any) -> Any:
        """A sentence's words: a list (JSONL, parquet, a request) or a text split at white space."""
        if isinstance(value, str):
            return value.split()
        return [str(word) for word in value] if isinstance(value, (list, tuple, np.ndarray)) else value

    def inference_split(self, examples: list) -> TokenSplit:
        return TokenSplit(list(examples), np.empty(0, dtype=object)).without_tags()  # without_tags reads the words

    def per_example(self, probs: np.ndarray, split: TokenSplit) -> list[np.ndarray]:
        return np.split(probs, np.cumsum(split.word_counts)[:-1]) if len(split) else []

    def use_command(self, run_dir: Path) -> str:
        return f"alpaca-predict {run_dir} sentences.jsonl"  # a "tokens" list (or a text) per line

    # --- data ------------------------------------------------------------------------------------------------------
    def load_splits(self, task_cfg: DictConfig, split_cfg: dict[str, Any], seed: int) -> TaskSplits:
        sources = {name: instantiate(src) for name, src in task_cfg.sources.items() if src is not None}
        if "train" not in sources:
            raise DataError(f"Task '{task_cfg.name}' has no sources.train; a token task reads its labelled set and "
                            f"pool from it.")
        raw = {name: source.read() for name, source in sources.items()}
        types = list(task_cfg.label_names) if task_cfg.get("label_names") else entity_types_in(raw["train"])
        if not types:
            raise DataError(f"{sources['train'].describe()} holds no entity tags; is tag_column right?")
        self.tag_names = tag_names(types, self.scheme)
        read = {name: map_tags(sentences, types, self.scheme, self.invalid_tags, sources[name].describe())
                for name, sentences in raw.items()}
        unknown = sorted(set(split_cfg) - set(SPLIT_KEYS))
        if unknown:
            raise DataError(f"split.{unknown[0]} does not apply to token tasks; they read {list(SPLIT_KEYS)}.")
        return build_token_splits(types, self.tag_names, read["train"], read.get("validation"), read.get("test"),
                                  seed, **{key: split_cfg.get(key) for key in SPLIT_KEYS})

    def hide_pool_labels(self, splits: TaskSplits) -> tuple[TaskSplits, np.ndarray]:
        hidden = word_tags(splits.pool)
        return TaskSplits(splits.label_names, splits.labelled, splits.pool.without_tags(), splits.validation,
                          splits.test, splits.info), hidden

    def gold(self, splits: TaskSplits, split: str) -> np.ndarray:
        return word_tags(getattr(splits, split))

    def make_datamodule(self, data: Callable[..., pl.LightningDataModule], splits: TaskSplits, tokenizer: Any,
                        seed: int) -> pl.LightningDataModule:
        from alpaca_lightning.data.token_datamodule import TokenDataModule

        return TokenDataModule(splits=splits, tokenizer=tokenizer, seed=seed, **data.keywords)

    # --- model -----------------------------------------------------------------------------------------------------
    def make_classifier(self, classifier: Callable[..., pl.LightningModule], **kwargs: Any) -> pl.LightningModule:
        return functools.partial(TokenClassifier, *classifier.args, **classifier.keywords)(**kwargs)

    def score(self, predictions: Predictions, gold: np.ndarray, prefix: str) -> dict[str, Any]:
        return entity_metrics(predictions, gold, self.tag_names, self.scheme, prefix)

    # --- self-training ---------------------------------------------------------------------------------------------
    def unit_groups(self, splits: TaskSplits, split: str) -> np.ndarray:
        return sentence_index(getattr(splits, split).word_counts)

    precision_basis = "the precision of the entities that the same filters keep on validation"

    def expected_precision(self, selected_probs: np.ndarray, fused_val: Fused, val_gold: np.ndarray,
                           select: Callable[[np.ndarray, np.ndarray, np.ndarray | None], np.ndarray]) -> float:
        """Entity-level: the round's filters applied to the fused teacher on validation, the kept words' tags (the
        rest read as O) scored as entities against the gold. The words' own confidence says little here: O
        dominates them, and a selection of confident O words alone teaches a student to miss entities, which this
        reads as precision 0 (no entity kept)."""
        if len(selected_probs) == 0:
            return float("nan")
        keep = select(fused_val.probs, fused_val.eligible, sentence_index(val_gold.sentence_lengths))
        scores = self.kept_tag_scores(np.flatnonzero(keep), fused_val.probs.argmax(axis=1)[keep], val_gold, "selected")
        return scores.get("selected/precision", float("nan"))

    def pseudo_label_scores(self, selected: PseudoLabelSet, pool_gold: np.ndarray) -> dict[str, Any]:
        """Entity-level precision and recall of the kept pseudo-labels against the pool's hidden gold: the words
        left out read as O, so a pseudo-entity counts when its every word was kept with the right tag."""
        scores = self.kept_tag_scores(selected.positions, selected.labels, pool_gold, "pseudo_entities")
        return {k: v for k, v in scores.items() if k.rsplit("/", 1)[1].startswith(("precision", "recall", "f1"))}

    def kept_tag_scores(self, positions: np.ndarray, tags: np.ndarray, gold: WordTags, prefix: str) -> dict[str, Any]:
        """Entity scores of a selection: the words at ``positions`` with their ``tags``, every other word O."""
        hard = np.zeros(len(gold), dtype=np.int64)  # O
        hard[positions] = tags
        return entity_metrics(Predictions(np.eye(len(self.tag_names), dtype=np.float32)[hard]), gold, self.tag_names,
                              self.scheme, prefix)


SPLIT_KEYS = ("labels_per_class", "val_per_class", "val_size", "pool_size", "test_size")


def sentence_index(lengths: np.ndarray) -> np.ndarray:
    """The sentence of each word, for sentences of these lengths."""
    return np.repeat(np.arange(len(lengths)), lengths)


def sentences_of(tags: np.ndarray, lengths: np.ndarray, names: list[str]) -> list[list[str]]:
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    return [[names[t] for t in tags[a:b].tolist()] for a, b in zip(bounds[:-1], bounds[1:])]


def entity_metrics(predictions: Predictions, gold: np.ndarray, names: list[str], scheme: str,
                   prefix: str) -> dict[str, Any]:
    """Entity-level precision, recall and F1 (seqeval, strict), per type and micro-averaged, on the sentences whose
    gold is known; plus word accuracy and NLL."""
    lengths = getattr(gold, "sentence_lengths", None)
    if lengths is None:
        raise ValueError("entity_metrics needs WordTags (gold tags with their sentence lengths).")
    known = np.asarray(gold) >= 0
    if not known.any():
        return {}
    predicted = predictions.labels
    true_sentences = sentences_of(np.where(known, gold, 0), lengths, names)
    predicted_sentences = sentences_of(predicted, lengths, names)
    keep = [i for i, part in enumerate(np.split(known, np.cumsum(lengths)[:-1])) if part.all()]
    report = classification_report([true_sentences[i] for i in keep], [predicted_sentences[i] for i in keep],
                                   mode="strict", scheme=SEQEVAL_SCHEMES[scheme], output_dict=True,
                                   zero_division=0)
    out: dict[str, Any] = {
        f"{prefix}/f1": float(report["micro avg"]["f1-score"]),
        f"{prefix}/precision": float(report["micro avg"]["precision"]),
        f"{prefix}/recall": float(report["micro avg"]["recall"]),
        f"{prefix}/acc": float((predicted[known] == np.asarray(gold)[known]).mean()),
        f"{prefix}/nll": nll(predictions.probs[known], np.asarray(gold)[known]),
        f"{prefix}/n": int(known.sum()),
    }
    for kind, row in sorted(report.items()):
        if not kind.endswith(" avg"):
            out.update({f"{prefix}/{name}_{kind}": float(row[key])
                        for name, key in (("f1", "f1-score"), ("precision", "precision"), ("recall", "recall"))})
    return out


__all__ = ["TokenClassification", "WordTags", "entity_metrics"]
