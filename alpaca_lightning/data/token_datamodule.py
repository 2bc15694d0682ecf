"""The DataModule of token tasks: its units are words, its examples sentence pieces.

Each sentence is tokenized word by word. A word's label sits on its first subword; the other subwords are read by
the encoder but never scored. A sentence whose subwords do not fit ``max_length`` is split into consecutive pieces
at word boundaries (never cut), so every word is predicted exactly once. A batch carries the (row, column) of each
scored word and its unit index, so the classifier scores words and the one prediction path merges words.

Training with pseudo-labels is partial annotation: a pool sentence trains on its selected words only, and a sentence
without a selected word is left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from alpaca_lightning.console import info
from alpaca_lightning.data.batching import pad_token_rows
from alpaca_lightning.data.datamodule import SPLITS, ConcatExamples, ExampleDataset, SelfTrainingDataModule
from alpaca_lightning.data.tokens import TokenSplit
from alpaca_lightning.errors import DataError


@dataclass
class EncodedPieces:
    """Sentence pieces of one split: subword ids, each scored word's subword column and its unit (word) index."""

    input_ids: list[list[int]]
    word_cols: list[np.ndarray]
    word_units: list[np.ndarray]
    num_units: int

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(ids) for ids in self.input_ids), dtype=np.int64, count=len(self.input_ids))

    def __len__(self) -> int:
        return len(self.input_ids)


def special_tokens(tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int]]:
    """The special token ids the tokenizer puts before and after one sequence ([CLS] ... [SEP]), read from how it
    encodes one word."""
    encoded = tokenizer([["word"]], is_split_into_words=True)
    ids, words = encoded["input_ids"][0], encoded.word_ids(0)
    first = words.index(0)
    last = len(words) - 1 - words[::-1].index(0)
    return ids[:first], ids[last + 1:]


def word_subwords(tokenizer: PreTrainedTokenizerBase, words: list[list[str]]) -> list[list[list[int]]]:
    """Per sentence, per word, its subword ids (an unknown-token id for a word that tokenizes to nothing)."""
    if not getattr(tokenizer, "is_fast", False):
        raise DataError(f"Token tasks need a fast tokenizer (word alignment); {type(tokenizer).__name__} is not one. "
                        f"Use a model whose folder has tokenizer.json.")
    out = []
    encoded = tokenizer(words, is_split_into_words=True, add_special_tokens=False)
    for i, sentence in enumerate(words):
        pieces: list[list[int]] = [[] for _ in sentence]
        for token_id, word in zip(encoded["input_ids"][i], encoded.word_ids(i)):
            if word is not None:
                pieces[word].append(token_id)
        out.append([p or [tokenizer.unk_token_id] for p in pieces])
    return out


def encode_words(tokenizer: PreTrainedTokenizerBase, split: TokenSplit, max_length: int, name: str) -> EncodedPieces:
    before, after = special_tokens(tokenizer)
    budget = max_length - len(before) - len(after)
    ids, cols, units = [], [], []
    unit = 0
    split_sentences = 0
    for sentence in word_subwords(tokenizer, split.words) if len(split) else []:
        piece: list[int] = []
        piece_cols: list[int] = []
        piece_units: list[int] = []
        pieces_before = len(ids)
        for subwords in sentence:
            subwords = subwords[:budget]  # a single word longer than the budget keeps its first subwords
            if piece and len(piece) + len(subwords) > budget:
                ids.append(before + piece + after)
                cols.append(np.asarray(piece_cols, dtype=np.int64))
                units.append(np.asarray(piece_units, dtype=np.int64))
                piece, piece_cols, piece_units = [], [], []
            piece_cols.append(len(before) + len(piece))
            piece_units.append(unit)
            piece.extend(subwords)
            unit += 1
        ids.append(before + piece + after)
        cols.append(np.asarray(piece_cols, dtype=np.int64))
        units.append(np.asarray(piece_units, dtype=np.int64))
        split_sentences += len(ids) - pieces_before > 1
    if split_sentences:
        info(f"{name}: {split_sentences} sentence(s) longer than data.max_length={max_length} subwords were split "
             f"at word boundaries into pieces ({len(ids)} pieces from {len(split)} sentences); no word is cut off")
    return EncodedPieces(ids, cols, units, unit)


class WordExamples(ExampleDataset):
    """Pieces of one encoded split at ``positions``. Per-unit ``fields`` (labels, weights, targets) index by word;
    ``scored`` (a boolean per unit, or None for all) says which words a piece carries."""

    def __init__(self, encoded: EncodedPieces, positions: np.ndarray, fields: dict[str, np.ndarray] | None = None,
                 scored: np.ndarray | None = None) -> None:
        super().__init__(encoded, positions, fields)
        self.scored = scored

    def __getitem__(self, i: int) -> dict[str, Any]:
        piece = int(self.positions[i])
        units = self.encoded.word_units[piece]
        keep = self.scored[units] if self.scored is not None else slice(None)
        item = {"input_ids": self.encoded.input_ids[piece], "word_cols": self.encoded.word_cols[piece][keep],
                "index": units[keep]}
        for key, values in self.fields.items():
            item[key] = values[units[keep]]
        return item


class WordCollator:
    """Pads the pieces and flattens their scored words: ``word_rows``/``word_cols`` locate each word's first
    subword, ``index`` is its unit, and per-word fields (labels, weights, targets) follow the same order."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = pad_token_rows([e["input_ids"] for e in examples], self.pad_token_id)
        counts = [len(e["index"]) for e in examples]
        batch["word_rows"] = torch.as_tensor(np.repeat(np.arange(len(examples)), counts), dtype=torch.long)
        for key in examples[0]:
            if key != "input_ids":
                batch[key] = torch.as_tensor(np.concatenate([e[key] for e in examples]))
        return batch


class TokenDataModule(SelfTrainingDataModule):
    """``SelfTrainingDataModule`` with words as units: pseudo-label positions index the pool's words."""

    def __init__(self, splits: Any, tokenizer: PreTrainedTokenizerBase, **kwargs: Any) -> None:
        super().__init__(splits, tokenizer, **kwargs)
        self.collator = WordCollator(tokenizer.pad_token_id)

    def prepare(self) -> None:
        if self.encoded:
            return
        for name in SPLITS:
            split = getattr(self.splits, name)
            split = split if split is not None else TokenSplit([], np.zeros(0, dtype=object))
            self.encoded[name] = encode_words(self.tokenizer, split, self.max_length, name)

    def unit_count(self, split: str) -> int:
        self.prediction_set(split)  # validates the name, tokenizes if needed
        return self.encoded[split].num_units

    def training_set(self) -> ConcatExamples:
        self.prepare()
        num_tags = len(self.splits.label_names)
        gold = self.splits.labelled.flat_tags
        labelled_fields = {"labels": gold, "weights": np.ones(len(gold), np.float32)}
        pool_units = self.encoded["pool"].num_units
        scored = np.zeros(pool_units, dtype=bool)
        scored[self.pseudo_positions] = True
        pseudo_fields = {"labels": np.full(pool_units, -1, np.int64), "weights": np.zeros(pool_units, np.float32)}
        pseudo_fields["labels"][self.pseudo_positions] = self.pseudo_labels
        pseudo_fields["weights"][self.pseudo_positions] = self.pseudo_weights
        if self.pseudo_targets is not None:  # soft labels: the labelled words' targets are one-hot
            labelled_fields["targets"] = np.eye(num_tags, dtype=np.float32)[gold]
            pseudo_fields["targets"] = np.zeros((pool_units, num_tags), np.float32)
            pseudo_fields["targets"][self.pseudo_positions] = self.pseudo_targets
        labelled_pieces = np.tile(np.arange(len(self.encoded["labelled"])), self.labelled_repeats)
        pool = self.encoded["pool"]
        with_selection = [i for i, units in enumerate(pool.word_units) if scored[units].any()]
        return ConcatExamples([
            WordExamples(self.encoded["labelled"], labelled_pieces, labelled_fields),
            WordExamples(pool, np.asarray(with_selection, dtype=np.int64), pseudo_fields, scored),
        ])

    def prediction_set(self, split: str) -> WordExamples:
        if split not in SPLITS:
            raise ValueError(f"Unknown split '{split}'; choose from {SPLITS}.")
        self.prepare()
        return WordExamples(self.encoded[split], np.arange(len(self.encoded[split])))
