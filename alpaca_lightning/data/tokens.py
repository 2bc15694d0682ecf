"""Token-level data (named entities): reading tagged sentences, checking their tags, and few-shot splits.

A sentence is a list of words with one tag per word (IOB2 or BIOES). Tags become integer ids over the tag set
``O, B-T, I-T[, E-T, S-T]`` of the task's entity types. The few-shot labelled set is drawn by the greedy sampling of
Yang & Katiyar (2020): every entity type appears at least K times, and no chosen sentence can be removed without
breaking that.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alpaca_lightning.console import info
from alpaca_lightning.data.sources import json_objects
from alpaca_lightning.data.splits import UNKNOWN_LABEL, TaskSplits
from alpaca_lightning.errors import DataError

SCHEMES = {"IOB2": ("B", "I"), "BIOES": ("B", "I", "E", "S")}
INVALID_TAG_RULES = ("refuse", "repair")
TOKEN_FORMATS = ("conll", "jsonl")

RawSentence = tuple[list[str], list[str]]


@dataclass
class TokenSplit:
    """Sentences as words, with one tag id per word (-1 where unknown). ``texts`` (the words joined) and ``labels``
    (one tag array per sentence) are what the task-independent code reads: fingerprints and self-supervised
    stages."""

    words: list[list[str]]
    labels: np.ndarray  # object array: one int64 array of tag ids per sentence

    def __len__(self) -> int:
        return len(self.words)

    @property
    def texts(self) -> list[str]:
        return [" ".join(w) for w in self.words]

    @property
    def word_counts(self) -> np.ndarray:
        return np.fromiter((len(w) for w in self.words), dtype=np.int64, count=len(self.words))

    @property
    def flat_tags(self) -> np.ndarray:
        """One tag per word, sentence after sentence: the split's units."""
        if not len(self.words):
            return np.zeros(0, dtype=np.int64)
        return np.concatenate(list(self.labels)).astype(np.int64)

    def subset(self, positions: Sequence[int]) -> TokenSplit:
        return TokenSplit([self.words[i] for i in positions], tag_arrays([self.labels[i] for i in positions]))

    def without_tags(self) -> TokenSplit:
        return TokenSplit(self.words, tag_arrays([np.full(len(w), UNKNOWN_LABEL) for w in self.words]))


def tag_arrays(tags: Sequence[Sequence[int]]) -> np.ndarray:
    out = np.empty(len(tags), dtype=object)
    for i, sentence_tags in enumerate(tags):
        out[i] = np.asarray(sentence_tags, dtype=np.int64)
    return out


class WordTags(np.ndarray):
    """The gold tag of every word of a split (the units), carrying the sentence lengths that entity-level scoring
    needs. Slices and arithmetic give plain arrays."""

    sentence_lengths: np.ndarray | None

    def __new__(cls, tags: np.ndarray, sentence_lengths: np.ndarray) -> WordTags:
        obj = np.asarray(tags, dtype=np.int64).view(cls)
        obj.sentence_lengths = np.asarray(sentence_lengths, dtype=np.int64)
        return obj

    def __array_finalize__(self, obj: Any) -> None:
        same = obj is not None and getattr(obj, "shape", None) == self.shape
        self.sentence_lengths = getattr(obj, "sentence_lengths", None) if same else None


def word_tags(split: TokenSplit) -> WordTags:
    return WordTags(split.flat_tags, split.word_counts)


# --- tag sets ---------------------------------------------------------------------------------------------------
def tag_names(entity_types: Sequence[str], scheme: str) -> list[str]:
    """``O`` then each entity type's prefixed tags, e.g. IOB2 over [PER, LOC]: O, B-PER, I-PER, B-LOC, I-LOC."""
    check_scheme(scheme)
    return ["O"] + [f"{prefix}-{kind}" for kind in entity_types for prefix in SCHEMES[scheme]]


def check_scheme(scheme: str) -> None:
    if scheme not in SCHEMES:
        raise DataError(f"task.kind.scheme={scheme!r} is not a tag scheme this package reads; use one of "
                        f"{sorted(SCHEMES)}.")


def entity_types_in(sentences: Sequence[RawSentence]) -> list[str]:
    """The entity types that the tags name, sorted (what ``task.label_names: null`` reads from the data)."""
    return sorted({tag.split("-", 1)[1] for _, tags in sentences for tag in tags if tag != "O" and "-" in tag})


def map_tags(sentences: Sequence[RawSentence], entity_types: Sequence[str], scheme: str, invalid: str,
             where: str) -> TokenSplit:
    """Check every sentence and turn its tags into ids; errors name the sentence (0 = the first) and the fix."""
    if invalid not in INVALID_TAG_RULES:
        raise DataError(f"task.kind.invalid_tags={invalid!r}: use one of {list(INVALID_TAG_RULES)}.")
    names = tag_names(entity_types, scheme)
    ids = {name: i for i, name in enumerate(names)}
    words, tags = [], []
    for number, (sentence_words, sentence_tags) in enumerate(sentences):
        place = f"sentence {number} of {where}"
        if not sentence_words:
            raise DataError(f"{place} is empty. Remove it (a blank line ends a sentence; two in a row make an "
                            f"empty one only in JSONL, where each line is a sentence).")
        if len(sentence_words) != len(sentence_tags):
            raise DataError(f"{place} has {len(sentence_words)} tokens but {len(sentence_tags)} tags; give one tag "
                            f"per token.")
        checked = check_transitions(list(sentence_tags), scheme, invalid, place)
        unknown = sorted({t for t in checked if t not in ids})
        if unknown:
            raise DataError(f"{place} has tag(s) {unknown} outside the task's tag set {names}. "
                            + scheme_hint(unknown, scheme, entity_types))
        words.append(list(sentence_words))
        tags.append([ids[t] for t in checked])
    return TokenSplit(words, tag_arrays(tags))


def scheme_hint(unknown: list[str], scheme: str, entity_types: Sequence[str]) -> str:
    prefixes = {t.split("-", 1)[0] for t in unknown if "-" in t}
    other = [name for name, allowed in SCHEMES.items() if name != scheme and prefixes <= set(allowed)]
    if prefixes - set(SCHEMES[scheme]) and other:
        return f"They look like the {other[0]} scheme: set task.kind.scheme={other[0]}."
    return (f"Add their entity types to task.label_names (now {list(entity_types)}), or set task.label_names=null "
            f"to read the types from the data.")


def check_transitions(tags: list[str], scheme: str, invalid: str, place: str) -> list[str]:
    """IOB2: ``I-X`` only after ``B-X`` or ``I-X``. ``repair`` turns such an ``I-X`` into ``B-X`` (seqeval's and
    conlleval's reading); ``refuse`` stops with the position. BIOES tags are checked for their set only."""
    if scheme != "IOB2":
        return tags
    out = list(tags)
    for i, tag in enumerate(tags):
        if not tag.startswith("I-"):
            continue
        before = out[i - 1] if i else "O"
        if before in (f"B-{tag[2:]}", tag):
            continue
        if invalid == "refuse":
            raise DataError(f"{place}: tag {tag!r} at token {i} follows {before!r}, which IOB2 does not allow. Fix the "
                            f"data, or set task.kind.invalid_tags=repair to read it as 'B-{tag[2:]}'.")
        out[i] = f"B-{tag[2:]}"
    return out


# --- reading --------------------------------------------------------------------------------------------------
class TokenFileSource:
    """Tagged sentences in a local file: CoNLL columns (a token per line, whitespace-separated columns, a blank line
    between sentences, ``-DOCSTART-`` lines skipped) or JSONL (one sentence per line, lists under ``tokens_key`` and
    ``tags_key``)."""

    def __init__(self, path: str, format: str = "auto", encoding: str = "utf-8", token_column: int = 0,
                 tag_column: int = -1, tokens_key: str = "tokens", tags_key: str = "tags") -> None:
        self.path = Path(path).expanduser()
        self.format = format
        self.encoding = encoding
        self.token_column, self.tag_column = token_column, tag_column
        self.tokens_key, self.tags_key = tokens_key, tags_key

    def describe(self) -> str:
        return str(self.path)

    def read(self) -> list[RawSentence]:
        if not self.path.is_file():
            raise DataError(f"Token data file {self.path} does not exist. Check the task's sources.*.path (and "
                            f"paths.data_dir / ALPACA_DATA_DIR for the benchmark tasks).")
        fmt = self._resolve_format()
        text = self.path.read_text(encoding=self.encoding)
        return self._conll(text) if fmt == "conll" else self._jsonl(text)

    def _resolve_format(self) -> str:
        if self.format in TOKEN_FORMATS:
            return self.format
        if self.format != "auto":
            raise DataError(f"Token source format {self.format!r} for {self.path}: use one of {TOKEN_FORMATS} or auto.")
        return "jsonl" if self.path.suffix in (".jsonl", ".json") else "conll"

    def _conll(self, text: str) -> list[RawSentence]:
        sentences: list[RawSentence] = []
        words: list[str] = []
        tags: list[str] = []
        for number, line in enumerate(text.splitlines(), start=1):
            columns = line.split()
            if not columns or columns[0] == "-DOCSTART-":
                if words:
                    sentences.append((words, tags))
                words, tags = [], []
                continue
            try:
                words.append(columns[self.token_column])
                tags.append(columns[self.tag_column])
            except IndexError:
                raise DataError(f"Line {number} of {self.path} has {len(columns)} column(s); token_column="
                                f"{self.token_column} and tag_column={self.tag_column} need more. Is it a CoNLL "
                                f"column file (format=conll)?") from None
        if words:
            sentences.append((words, tags))
        return sentences

    def _jsonl(self, text: str) -> list[RawSentence]:
        sentences = []
        example = f'{{"{self.tokens_key}": [...], "{self.tags_key}": [...]}}'
        for number, record in json_objects(text.splitlines(), str(self.path), example):
            missing = [k for k in (self.tokens_key, self.tags_key) if not isinstance(record.get(k), list)]
            if missing:
                raise DataError(f"Line {number} of {self.path} has no list under {missing}; set the source's "
                                f"tokens_key / tags_key to its keys ({sorted(record)}).")
            sentences.append(([str(t) for t in record[self.tokens_key]], [str(t) for t in record[self.tags_key]]))
        return sentences


# --- few-shot sampling ---------------------------------------------------------------------------------------
def entity_counts(tags: np.ndarray, names: Sequence[str]) -> Counter:
    """Entity mentions per type in one sentence: each ``B-`` (or ``S-``) tag starts one."""
    return Counter(names[t][2:] for t in tags.tolist() if t >= 0 and names[t][:2] in ("B-", "S-"))


def greedy_k_shot(split: TokenSplit, names: Sequence[str], entity_types: Sequence[str], k: int,
                  candidates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Yang & Katiyar (2020), Algorithm 1: for each type, rarest first, add random sentences that hold it until it
    has K mentions; then drop every chosen sentence whose removal keeps each type at K or more."""
    counts = {i: entity_counts(split.labels[i], names) for i in candidates.tolist()}
    totals = Counter()
    for c in counts.values():
        totals.update(c)
    short = [t for t in entity_types if totals[t] < k]
    if short:
        raise DataError(f"Entity type(s) {short} have fewer than {k} mentions among {len(candidates)} sentences "
                        f"({dict(totals)}); lower split.labels_per_class (K per entity type) or add data.")
    order = rng.permutation(candidates)
    chosen: list[int] = []
    have = Counter()
    for kind in sorted(entity_types, key=lambda t: (totals[t], t)):
        for i in order.tolist():
            if have[kind] >= k:
                break
            if kind in counts[i] and i not in chosen:
                chosen.append(i)
                have.update(counts[i])
    for i in list(chosen):
        without = have - counts[i]
        if all(without[t] >= k for t in entity_types):
            chosen.remove(i)
            have = without
    return np.asarray(chosen, dtype=np.int64)


def capped(positions: np.ndarray, size: int | None) -> np.ndarray:
    return positions if size is None else positions[:size]


def build_token_splits(label_names: list[str], tags: list[str], labelled_source: TokenSplit,
                       validation_source: TokenSplit | None, test: TokenSplit | None, seed: int,
                       labels_per_class: int | None, val_per_class: int | None, val_size: int | None,
                       pool_size: int | None, test_size: int | None) -> TaskSplits:
    """labelled: K-shot per entity type; validation: K-shot (``val_per_class``) or ``val_size`` random sentences,
    from the validation source or else from the training rest; pool: the training rest, shuffled and capped; test:
    a fixed-seed subset of ``test_size`` sentences (the same for every seed)."""
    rng = np.random.default_rng(seed)
    everything = np.arange(len(labelled_source))
    if labels_per_class is None:
        labelled = capped(rng.permutation(everything), pool_size)
    else:
        labelled = greedy_k_shot(labelled_source, tags, label_names, labels_per_class, everything, rng)
    rest = np.setdiff1d(everything, labelled)
    val_from, val_candidates = (validation_source, np.arange(len(validation_source))) if validation_source \
        else (labelled_source, rest)
    if val_per_class is not None:
        validation = greedy_k_shot(val_from, tags, label_names, val_per_class, val_candidates, rng)
    elif val_size is not None:
        validation = rng.permutation(val_candidates)[:val_size]
    else:
        raise DataError("A token task needs split.val_per_class (K-shot) or split.val_size (sentences).")
    if validation_source is None:
        rest = np.setdiff1d(rest, validation)
    pool = capped(rng.permutation(rest), pool_size) if labels_per_class is not None else rest[:0]
    if test is not None and test_size is not None:
        test = test.subset(np.sort(np.random.default_rng(1234).permutation(len(test))[:test_size]))
    splits = TaskSplits(tags, labelled_source.subset(labelled), labelled_source.subset(pool),
                        val_from.subset(validation), test, {"duplicates": {}, "entity_types": list(label_names)})
    mentions = sum((entity_counts(t, tags) for t in splits.labelled.labels), Counter())
    info(f"{len(labelled)} labelled sentences with entity mentions {dict(sorted(mentions.items()))}")
    return splits
