"""The DataModule owns the data state of a self-training run.

It tokenizes every split once and serves training data as named streams (``STREAMS``): ``train`` is labelled ∪
the current pseudo-labelled examples, ``pool`` the unlabelled texts (for consistency losses). A training batch is
a dict of the streams that the module being trained asks for (``module.streams``); the ``train`` stream sets the
epoch and every other stream gives one batch per ``train`` batch. Any split is served for prediction with each
batch carrying dataset indices. ``for_round`` makes each fit its own DataModule with a round's pseudo-label set
installed. Training labels come only from the labelled set and from the installed pseudo-labels (the pipeline
hides the pool's gold labels).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.utilities import CombinedLoader
from torch.utils.data import DataLoader, Dataset
from transformers import PreTrainedTokenizerBase

from alpaca_lightning.data.batching import Collator, GlobalBatchSampler, PredictionBatches
from alpaca_lightning.data.splits import TaskSplits, TextSplit
from alpaca_lightning.errors import ConfigError, DataError
from alpaca_lightning.preemption import take_resume_skip

SPLITS = ("labelled", "pool", "validation", "test")
STREAMS = ("train", "pool")


@dataclass
class EncodedSplit:
    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(ids) for ids in self.input_ids), dtype=np.int64, count=len(self.input_ids))

    def __len__(self) -> int:
        return len(self.input_ids)


def encode(tokenizer: PreTrainedTokenizerBase, split: TextSplit, max_length: int) -> EncodedSplit:
    if len(split) == 0:
        return EncodedSplit([], None)
    if isinstance(split.texts[0], tuple):
        first, second = zip(*split.texts)
        out = tokenizer(list(first), list(second), truncation=True, max_length=max_length)
    else:
        out = tokenizer(list(split.texts), truncation=True, max_length=max_length)
    return EncodedSplit(out["input_ids"], out.get("token_type_ids"))


class ExampleDataset(Dataset):
    """Examples of one encoded split at ``positions``, with per-example ``fields`` (labels, weights, ...)."""

    def __init__(self, encoded: EncodedSplit, positions: np.ndarray, fields: dict[str, np.ndarray] | None = None):
        self.encoded = encoded
        self.positions = np.asarray(positions, dtype=np.int64)
        self.fields = fields or {}

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> dict[str, Any]:
        pos = int(self.positions[i])
        item: dict[str, Any] = {"index": pos, "input_ids": self.encoded.input_ids[pos]}
        if self.encoded.token_type_ids is not None:
            item["token_type_ids"] = self.encoded.token_type_ids[pos]
        for key, values in self.fields.items():
            item[key] = values[i]
        return item

    @property
    def lengths(self) -> np.ndarray:
        return self.encoded.lengths[self.positions]

    def token_ids(self) -> set[int]:
        return {token for pos in self.positions for token in self.encoded.input_ids[pos]}


class ConcatExamples(Dataset):
    def __init__(self, parts: list[ExampleDataset]):
        self.parts = [p for p in parts if len(p)]
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, i: int) -> dict[str, Any]:
        part = int(np.searchsorted(self.offsets, i, side="right") - 1)
        return self.parts[part][i - int(self.offsets[part])]

    @property
    def lengths(self) -> np.ndarray:
        return np.concatenate([p.lengths for p in self.parts])

    def token_ids(self) -> set[int]:
        return set().union(*(p.token_ids() for p in self.parts))


def check_labelled_share(share: float | None) -> None:
    if share is not None and not 0 < share < 1:
        raise ConfigError(
            f"selftrain.labelled_share must lie strictly between 0 and 1 (e.g. 0.5: half of each student's training "
            f"examples are labelled ones, repeated), or be null, got {share}."
        )


def labelled_repeats(num_labelled: int, num_pseudo: int, share: float | None) -> int:
    """How many copies of the labelled set make it about ``share`` of labelled + pseudo-labelled (at least one)."""
    check_labelled_share(share)
    if share is None or num_labelled == 0:
        return 1
    return max(1, round(share / (1 - share) * num_pseudo / num_labelled))


class SelfTrainingDataModule(pl.LightningDataModule):
    # Its training batches depend on (seed, round, epoch) only, so a fit can resume after any step of an epoch.
    resumes_mid_epoch = True

    def __init__(
        self,
        splits: TaskSplits,
        tokenizer: PreTrainedTokenizerBase,
        max_length: int = 128,
        batch_size: int = 16,
        predict_batch_size: int = 128,
        group_by_length: bool = True,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.splits = splits
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self.predict_batch_size = predict_batch_size
        self.group_by_length = group_by_length
        self.num_workers = num_workers
        self.seed = seed
        self.collator = Collator(tokenizer.pad_token_id)
        self.encoded: dict[str, EncodedSplit] = {}
        self.round_index = 0
        self.order_seed = seed  # the batch-order seed; start_round sets it per round
        self.pseudo_positions = np.zeros(0, dtype=np.int64)
        self.pseudo_labels = np.zeros(0, dtype=np.int64)
        self.pseudo_weights = np.zeros(0, dtype=np.float32)
        self.pseudo_targets: np.ndarray | None = None
        self.labelled_repeats = 1
        self.predict_split = "pool"

    # --- data state -------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Tokenize every split, once per run (later calls are free)."""
        if self.encoded:
            return
        for name in SPLITS:
            split = getattr(self.splits, name)
            self.encoded[name] = encode(self.tokenizer, split if split is not None else TextSplit([], np.zeros(0)),
                                        self.max_length)

    def setup(self, stage: str | None = None) -> None:
        self.prepare()

    def start_round(
        self,
        round_index: int,
        positions: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        weights: np.ndarray | None = None,
        targets: np.ndarray | None = None,
        order_seed: int | None = None,
        labelled_share: float | None = None,
    ) -> None:
        """Install the pseudo-label set of a round: pool ``positions`` with their ``labels`` (None: labelled only),
        optional per-example loss ``weights`` and optional soft ``targets`` (one class distribution per example).
        Batches are drawn with ``order_seed`` (default: the run's seed + 1000 × round), so that a model trained
        with another seed on the same data (a seed-ensemble member) also sees its own batch order.
        ``labelled_share`` (0-1) repeats the labelled set until it makes up about that share of the training set,
        so that gold labels keep their weight among many pseudo-labels (None: each labelled example once)."""
        self.prepare()
        positions = np.zeros(0, dtype=np.int64) if positions is None else np.asarray(positions, dtype=np.int64)
        labels = np.zeros(0, dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
        if len(positions) != len(labels):
            raise ValueError("start_round needs one pseudo-label per pool position.")
        if len(positions) and (positions.min() < 0 or positions.max() >= self.unit_count("pool")):
            raise ValueError("pseudo-label positions fall outside the unlabelled pool.")
        if len(np.unique(positions)) != len(positions):
            raise ValueError("pseudo-label positions must be unique.")
        if targets is not None and targets.shape != (len(positions), len(self.splits.label_names)):
            raise ValueError("soft targets need one class distribution per pseudo-label.")
        self.round_index = round_index
        self.order_seed = self.seed + 1000 * round_index if order_seed is None else order_seed
        self.pseudo_positions = positions
        self.pseudo_labels = labels
        self.pseudo_weights = (
            np.ones(len(positions), dtype=np.float32) if weights is None else np.asarray(weights, dtype=np.float32)
        )
        self.pseudo_targets = None if targets is None else np.asarray(targets, dtype=np.float32)
        self.labelled_repeats = labelled_repeats(self.unit_count("labelled"), len(positions), labelled_share)

    def for_round(self, round_index: int, **pseudo_labels: Any) -> SelfTrainingDataModule:
        """A new DataModule for one fit: this one's encoded splits (shared, tokenized once) with a round's training
        data installed (``start_round``'s arguments). This one is left as it is, so the data a fit trains on is a
        value handed to that fit, never state that a teacher and the round loop both change."""
        self.prepare()
        fresh = copy.copy(self)
        fresh.trainer = None
        fresh.start_round(round_index, **pseudo_labels)
        return fresh

    def training_set(self) -> ConcatExamples:
        self.prepare()
        gold = np.tile(self.splits.labelled.labels, self.labelled_repeats)
        labelled_fields = {"labels": gold, "weights": np.ones(len(gold), np.float32)}
        pseudo_fields = {"labels": self.pseudo_labels, "weights": self.pseudo_weights}
        if self.pseudo_targets is not None:  # soft labels: the labelled examples' targets are one-hot
            labelled_fields["targets"] = np.eye(len(self.splits.label_names), dtype=np.float32)[gold]
            pseudo_fields["targets"] = self.pseudo_targets
        positions = np.tile(np.arange(len(self.splits.labelled)), self.labelled_repeats)
        labelled = ExampleDataset(self.encoded["labelled"], positions, labelled_fields)
        pseudo = ExampleDataset(self.encoded["pool"], self.pseudo_positions, pseudo_fields)
        return ConcatExamples([labelled, pseudo])

    def prediction_set(self, split: str) -> ExampleDataset:
        if split not in SPLITS:
            raise ValueError(f"Unknown split '{split}'; choose from {SPLITS}.")
        self.prepare()
        return ExampleDataset(self.encoded[split], np.arange(len(self.encoded[split])))

    def unit_count(self, split: str) -> int:
        """How many units (rows of a prediction) the split has: one per example here."""
        return len(self.prediction_set(split))

    def token_ids(self, split: str) -> list[list[int]]:
        """The split's token ids as this DataModule encoded them (once per run)."""
        self.prediction_set(split)  # validates the name, tokenizes if needed
        return self.encoded[split].input_ids

    def use_for_prediction(self, split: str) -> None:
        """Choose the split that the next ``trainer.predict(datamodule=...)`` runs over."""
        self.prediction_set(split)  # validates the name
        self.predict_split = split

    # --- Lightning hooks --------------------------------------------------------------------------------------
    def _rank_and_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def requested_streams(self) -> list[str]:
        module = getattr(getattr(self, "trainer", None), "lightning_module", None)
        streams = list(getattr(module, "streams", ["train"]))
        unknown = sorted(set(streams) - set(STREAMS))
        if unknown:
            raise DataError(f"Unknown data stream(s) {unknown} asked for by a loss; the DataModule serves {STREAMS}.")
        return streams

    def stream_dataset(self, stream: str) -> Dataset:
        if stream == "train":
            return self.training_set()
        return self.prediction_set("pool")  # texts and indices only: the pool's labels are never served

    def training_token_ids(self, streams: list[str]) -> list[int]:
        """Every token id that a training batch of these streams can hold (padding included), sorted: the same
        on every process, whatever its share of the batches."""
        ids = {self.collator.pad_token_id}
        for stream in streams:
            ids |= self.stream_dataset(stream).token_ids()
        return sorted(ids)

    def train_dataloader(self) -> CombinedLoader:
        dataset = self.training_set()
        if len(dataset) == 0:
            raise DataError("The training set is empty: no labelled examples and no pseudo-labels.")
        rank, world = self._rank_and_world()
        resume = take_resume_skip(getattr(self, "trainer", None))
        num_batches = None
        loaders = {}
        for stream in ["train"] + [s for s in self.requested_streams() if s != "train"]:
            data = self.stream_dataset(stream)
            if len(data) == 0:
                raise DataError(f"The '{stream}' data stream is empty (a loss needs it); drop that loss or add data.")
            sampler = GlobalBatchSampler(
                data.lengths, self.batch_size, seed=self.order_seed + STREAMS.index(stream),
                group_by_length=self.group_by_length, rank=rank, world_size=world, num_batches=num_batches,
            )
            num_batches = num_batches or len(sampler)  # side streams follow the train stream's epoch
            if resume is not None:
                sampler.skip_on_resume(*resume)
            loaders[stream] = DataLoader(data, batch_sampler=sampler, collate_fn=self.collator,
                                         num_workers=self.num_workers)
        return CombinedLoader(loaders, mode="min_size")

    def predict_dataloader(self) -> DataLoader:
        dataset = self.prediction_set(self.predict_split)
        rank, world = self._rank_and_world()
        batches = PredictionBatches(dataset.lengths, self.predict_batch_size, rank, world)
        return DataLoader(dataset, batch_sampler=batches, collate_fn=self.collator, num_workers=self.num_workers)
