"""Batching that gives the same global batches on 1 or N processes.

Training batches are drawn as *global* batches (seeded by seed and epoch) and each rank takes its slice, so a
2-process DDP run sees exactly the examples a 1-process run sees in each step. Prediction shards a length-sorted
order without padding duplicates, so every example is predicted exactly once. Padding is dynamic, per batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch


class GlobalBatchSampler:
    """Yields this rank's slice of each global training batch.

    With ``group_by_length``, examples are shuffled, cut into chunks of ``50 * batch_size``, sorted by length inside
    each chunk and batched, then the batch order is shuffled: little padding, still random.
    A trailing batch smaller than half a batch is merged into the previous one, so no rank ever gets an empty slice.
    ``num_batches`` fixes the number of batches per epoch (cycling through reshuffled passes as needed): a side
    stream such as the unlabelled pool then gives exactly one batch per training batch.
    """

    chunk_batches = 50

    def __init__(
        self,
        lengths: Sequence[int],
        global_batch_size: int,
        seed: int,
        group_by_length: bool = True,
        rank: int = 0,
        world_size: int = 1,
        num_batches: int | None = None,
    ) -> None:
        if global_batch_size % world_size:
            raise ValueError(
                f"data.batch_size={global_batch_size} is the global batch size and must be divisible by the "
                f"number of processes ({world_size})."
            )
        if global_batch_size < 2 * world_size:
            raise ValueError(f"data.batch_size={global_batch_size} must be at least 2 x the number of processes.")
        self.lengths = np.asarray(lengths)
        self.global_batch_size = global_batch_size
        self.seed = seed
        self.group_by_length = group_by_length
        self.rank = rank
        self.world_size = world_size
        self.num_batches = num_batches
        self.epoch = 0
        self.resume_skip: tuple[int, int] | None = None  # (epoch, batches): a fit resumed mid-epoch
        # Lightning calls set_epoch on `batch_sampler.sampler`; point it here.
        self.sampler = self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def global_batches(self) -> list[np.ndarray]:
        if self.num_batches is None:
            return self._one_pass(0)
        batches: list[np.ndarray] = []
        passes = 0
        while len(batches) < self.num_batches:
            batches += self._one_pass(passes)
            passes += 1
        return batches[: self.num_batches]

    def _one_pass(self, pass_index: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch, pass_index])
        order = rng.permutation(len(self.lengths))
        size = self.global_batch_size
        if self.group_by_length:
            chunk = size * self.chunk_batches
            chunks = np.split(order, range(chunk, len(order), chunk))
            order = np.concatenate([c[np.argsort(-self.lengths[c], kind="stable")] for c in chunks])
        batches = [order[i : i + size] for i in range(0, len(order), size)]
        if len(batches) > 1 and len(batches[-1]) < size // 2:
            last = batches.pop()
            batches[-1] = np.concatenate([batches[-1], last])
        if self.group_by_length:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def skip_on_resume(self, epoch: int, batches: int) -> None:
        """Leave out the first ``batches`` of ``epoch`` (once): a resumed fit continues with the very batch an
        uninterrupted one would train on next, since the order depends on (seed, epoch) only."""
        self.resume_skip = (epoch, batches)

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.global_batches()
        if self.resume_skip is not None and self.resume_skip[0] == self.epoch:
            batches = batches[self.resume_skip[1] :]
            self.resume_skip = None
        for batch in batches:
            yield batch[self.rank :: self.world_size].tolist()

    def __len__(self) -> int:
        return len(self.global_batches())


class PredictionBatches:
    """This rank's share of a longest-first order, in batches: every index on exactly one rank, no duplicates."""

    def __init__(self, lengths: Sequence[int], batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        order = np.argsort(-np.asarray(lengths), kind="stable")[rank::world_size]
        self.batches = [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class Collator:
    """Pads a list of examples to the longest one in the batch."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = pad_token_rows([e["input_ids"] for e in examples], self.pad_token_id)
        width = batch["input_ids"].shape[1]
        if "token_type_ids" in examples[0]:
            batch["token_type_ids"] = pad_rows([e["token_type_ids"] for e in examples], width, 0)
        for key in examples[0]:
            if key not in batch:
                batch[key] = torch.as_tensor(np.asarray([e[key] for e in examples]))
        return batch


def pad_token_rows(rows: list[list[int]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """``input_ids`` padded to the longest row and the matching ``attention_mask``."""
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    width = int(lengths.max())
    mask = np.arange(width) < lengths[:, None]
    return {"input_ids": pad_rows(rows, width, pad_token_id), "attention_mask": torch.from_numpy(mask.astype(np.int64))}


def pad_rows(rows: list[list[int]], width: int, value: int) -> torch.Tensor:
    # filled in numpy, one tensor at the end: a tensor per row was most of the collation time
    out = np.full((len(rows), width), value, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return torch.from_numpy(out)
