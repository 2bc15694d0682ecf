"""Global batches are the same on 1 or N processes; prediction shards cover every example exactly once."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alpaca_lightning.data.batching import Collator, GlobalBatchSampler, PredictionBatches


@pytest.mark.parametrize("n,batch,world", [(37, 8, 2), (100, 16, 2), (5, 4, 2), (64, 12, 3)])
def test_ranks_split_the_single_process_batches(n: int, batch: int, world: int) -> None:
    lengths = np.random.default_rng(0).integers(3, 40, size=n)
    single = list(GlobalBatchSampler(lengths, batch, seed=1))
    ranks = [list(GlobalBatchSampler(lengths, batch, seed=1, rank=r, world_size=world)) for r in range(world)]
    assert all(len(r) == len(single) for r in ranks)
    for step, whole in enumerate(single):
        assert sorted(i for r in ranks for i in r[step]) == sorted(whole)
        assert all(len(r[step]) > 0 for r in ranks)
    assert sorted(i for b in single for i in b) == list(range(n))


def test_epochs_reshuffle_and_length_grouping_cuts_padding() -> None:
    lengths = np.random.default_rng(0).integers(3, 60, size=400)
    sampler = GlobalBatchSampler(lengths, 16, seed=0, group_by_length=True)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first
    ungrouped = list(GlobalBatchSampler(lengths, 16, seed=0, group_by_length=False))

    def padding(batches):
        return sum(max(lengths[b]) * len(b) - sum(lengths[b]) for b in batches)

    assert padding(first) < 0.3 * padding(ungrouped)


def test_global_batch_must_split_evenly() -> None:
    with pytest.raises(ValueError, match="divisible"):
        GlobalBatchSampler([1, 2, 3], 5, seed=0, world_size=2)


@pytest.mark.parametrize("world", [1, 2, 3])
def test_prediction_shards_have_no_duplicates(world: int) -> None:
    lengths = np.random.default_rng(0).integers(1, 50, size=37)
    seen = [i for r in range(world) for b in PredictionBatches(lengths, 8, r, world) for i in b]
    assert sorted(seen) == list(range(37))


def test_collator_pads_each_batch_to_its_longest_row_and_keeps_the_other_fields() -> None:
    examples = [
        {"index": 7, "input_ids": [101, 5, 102], "token_type_ids": [0, 0, 0], "label": 1},
        {"index": 2, "input_ids": [101, 102], "token_type_ids": [0, 0], "label": 0},
        {"index": 4, "input_ids": [101, 6, 7, 8, 102], "token_type_ids": [0, 0, 1, 1, 1], "label": 1},
    ]
    batch = Collator(pad_token_id=9)(examples)
    assert batch["input_ids"].tolist() == [[101, 5, 102, 9, 9], [101, 102, 9, 9, 9], [101, 6, 7, 8, 102]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 1, 1, 1]]
    assert batch["index"].tolist() == [7, 2, 4] and batch["label"].tolist() == [1, 0, 1]
    assert all(t.dtype == torch.long for t in batch.values())
