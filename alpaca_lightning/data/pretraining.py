"""Data for the self-supervised stage: the task's own text, masked, and optionally paired for NSP."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset
from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerBase

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
IS_NEXT, IS_RANDOM = 0, 1  # the label convention of BertForPreTraining


def split_segments(text: str) -> list[str]:
    """Sentences of a text; a one-sentence text is cut at the middle word so it still yields a pair."""
    sentences = [s for s in _SENTENCE_END.split(text.strip()) if s]
    if len(sentences) >= 2:
        return sentences
    words = text.split()
    if len(words) < 4:
        return []
    return [" ".join(words[: len(words) // 2]), " ".join(words[len(words) // 2 :])]


def build_nsp_pairs(texts: list[str], seed: int, negative_fraction: float = 0.5) -> list[tuple[str, str, int]]:
    """(A, B, label) from consecutive segments of each text; a share of B's replaced by a segment of another text."""
    rng = np.random.default_rng(seed)
    segmented = [split_segments(t) for t in texts]
    owners = [i for i, segs in enumerate(segmented) for _ in segs]
    flat = [s for segs in segmented for s in segs]
    pairs = []
    for doc, segs in enumerate(segmented):
        for a, b in zip(segs, segs[1:]):
            if len(flat) > len(segs) and rng.random() < negative_fraction:
                pick = int(rng.integers(len(flat)))
                while owners[pick] == doc:
                    pick = int(rng.integers(len(flat)))
                pairs.append((a, flat[pick], IS_RANDOM))
            else:
                pairs.append((a, b, IS_NEXT))
    return pairs


class _Encoded(Dataset):
    def __init__(self, features: list[dict[str, Any]]):
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.features[i]


class _MLMCollator:
    """HF's MLM collator (padding + 80/10/10 masking), keeping an NSP label when present."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, mlm_probability: float):
        self.mlm = DataCollatorForLanguageModeling(tokenizer, mlm_probability=mlm_probability)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        nsp = [f["next_sentence_label"] for f in features] if "next_sentence_label" in features[0] else None
        batch = self.mlm([{k: v for k, v in f.items() if k != "next_sentence_label"} for f in features])
        if nsp is not None:
            import torch

            batch["next_sentence_label"] = torch.tensor(nsp)
        return batch


class PretrainDataModule(pl.LightningDataModule):
    def __init__(
        self,
        texts: list[str],
        tokenizer: PreTrainedTokenizerBase,
        next_sentence: bool,
        max_length: int = 128,
        batch_size: int = 32,
        mlm_probability: float = 0.15,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.collator = _MLMCollator(tokenizer, mlm_probability)
        self.dataset = _Encoded(self._encode(texts, next_sentence, max_length, seed))

    def _encode(self, texts: list[str], next_sentence: bool, max_length: int, seed: int) -> list[dict[str, Any]]:
        if not next_sentence:
            enc = self.tokenizer(texts, truncation=True, max_length=max_length)
            return [{k: enc[k][i] for k in enc.keys()} for i in range(len(texts))]
        pairs = build_nsp_pairs(texts, seed)
        if not pairs:
            raise ValueError("No text has two segments to build next-sentence pairs from; use stages=[mlm].")
        first, second, labels = zip(*pairs)
        enc = self.tokenizer(list(first), list(second), truncation=True, max_length=max_length)
        return [{**{k: enc[k][i] for k in enc.keys()}, "next_sentence_label": labels[i]} for i in range(len(pairs))]

    def train_dataloader(self) -> DataLoader:
        # Pretraining has no cross-process equivalence requirement: Lightning's DistributedSampler is fine here.
        return DataLoader(
            self.dataset, batch_size=self.batch_size, shuffle=True, collate_fn=self.collator,
            num_workers=self.num_workers,
        )
