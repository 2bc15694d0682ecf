"""Issue 10's leaner training step: a fit trains only the embedding rows of its own tokens, dropout masks from
uniform numbers on a CPU, and gradient clipping without a multiplication by 1."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from alpaca_lightning.data.datamodule import SelfTrainingDataModule
from alpaca_lightning.data.splits import TaskSplits, TextSplit
from alpaca_lightning.errors import AlpacaError
from alpaca_lightning.models import optim
from alpaca_lightning.models.backbone import TinyBertBackbone, load_tokenizer
from alpaca_lightning.models.classifier import SequenceClassifier
from alpaca_lightning.models.dropout import UniformMaskDropout, use_uniform_mask_dropout
from alpaca_lightning.models.embedding_rows import FitRowsEmbedding
from tests.conftest import synthetic_rows

WORD_EMBEDDINGS = "model.embeddings.word_embeddings.weight"


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> str:
    rows = synthetic_rows(300, seed=0)
    return TinyBertBackbone().materialize(tmp_path_factory.mktemp("tiny"), [text for text, _ in rows], seed=0)


def text_split(rows: list[tuple[str, str]]) -> TextSplit:
    return TextSplit([text for text, _ in rows], np.array([int(label == "pos") for _, label in rows]))


def datamodule(encoder: str) -> SelfTrainingDataModule:
    """32 labelled texts, a pool of 64 of which 20 carry pseudo-labels, and validation texts with a word of their
    own ("zebra"), which no training batch holds."""
    rows = synthetic_rows(120, seed=1)
    validation = [(f"zebra {text}", label) for text, label in rows[96:]]
    splits = TaskSplits(["neg", "pos"], text_split(rows[:32]), text_split(rows[32:96]), text_split(validation), None)
    dm = SelfTrainingDataModule(splits, load_tokenizer(encoder), max_length=32, batch_size=8)
    positions = np.arange(0, 40, 2)
    dm.start_round(1, positions, splits.pool.labels[positions])
    return dm


def fitted(encoder: str, embedding_updates: str, weight_decay: float) -> tuple[SequenceClassifier, dict]:
    torch.manual_seed(0)
    module = SequenceClassifier(encoder, num_labels=2, optimizer=functools.partial(torch.optim.AdamW, lr=3e-3),
                                weight_decay=weight_decay, dropout=0.0, embedding_updates=embedding_updates)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=1.0)
    trainer.fit(module, datamodule=datamodule(encoder))
    return module, before


def rows_in(dm: SelfTrainingDataModule, split: str, positions=None) -> set[int]:
    ids = dm.token_ids(split)
    return {token for i in (positions if positions is not None else range(len(ids))) for token in ids[i]}


@pytest.mark.slow
def test_training_only_seen_rows_gives_the_same_model_as_training_every_row(encoder) -> None:
    seen, before = fitted(encoder, "seen", weight_decay=0.0)
    every, _ = fitted(encoder, "all", weight_decay=0.0)
    assert isinstance(seen.model.get_input_embeddings(), torch.nn.Embedding)  # the plain table is back
    assert not isinstance(seen.model.get_input_embeddings(), FitRowsEmbedding)
    after_seen, after_all = seen.state_dict(), every.state_dict()
    assert after_seen.keys() == after_all.keys()
    for key in after_seen:
        torch.testing.assert_close(after_seen[key], after_all[key], rtol=0, atol=1e-6, msg=key)
    dm = datamodule(encoder)
    dm.prepare()
    trained = rows_in(dm, "labelled") | rows_in(dm, "pool", dm.pseudo_positions)
    validation_only = sorted(rows_in(dm, "validation") - trained)
    assert validation_only  # the zebra
    changed = (after_seen[WORD_EMBEDDINGS] != before[WORD_EMBEDDINGS]).any(dim=1)
    assert changed[sorted(trained - {dm.collator.pad_token_id})].all()  # labelled and pseudo-labelled tokens train
    assert not changed[validation_only].any()


@pytest.mark.slow
def test_with_weight_decay_only_the_unseen_rows_differ(encoder) -> None:
    seen, before = fitted(encoder, "seen", weight_decay=0.1)
    every, _ = fitted(encoder, "all", weight_decay=0.1)
    dm = datamodule(encoder)
    dm.prepare()
    trained = rows_in(dm, "labelled") | rows_in(dm, "pool", dm.pseudo_positions) | {dm.collator.pad_token_id}
    unseen = sorted(set(range(len(before[WORD_EMBEDDINGS]))) - trained)
    table_seen, table_all = seen.state_dict()[WORD_EMBEDDINGS], every.state_dict()[WORD_EMBEDDINGS]
    assert torch.equal(table_seen[unseen], before[WORD_EMBEDDINGS][unseen])  # left as they were
    ratio = table_all[unseen] / before[WORD_EMBEDDINGS][unseen]  # AdamW only shrank them
    assert float(ratio.min()) > 0.99 and float(ratio.max()) < 1.0


def test_the_row_embedding_keeps_the_plain_state_dict_and_trains_only_its_rows() -> None:
    torch.manual_seed(0)
    plain = torch.nn.Embedding(10, 4, padding_idx=0)
    rows = FitRowsEmbedding(plain, torch.tensor([0, 2, 5, 2]))
    assert list(rows.state_dict()) == ["weight"] and len(rows.rows) == 3
    with torch.no_grad():
        rows.rows[2] += 1.0  # token 5 (the ids are kept sorted: 0, 2, 5) "trains"
    ids = torch.tensor([[5, 3, 2, 0]])
    expected = plain.weight.detach().clone()
    expected[5] += 1.0
    torch.testing.assert_close(rows(ids), expected[ids])  # seen rows trained, the others as they were
    rows(ids).sum().backward()
    assert rows.rows.grad[0].abs().sum() == 0  # the padding row gets no gradient, as in nn.Embedding
    assert rows.rows.grad[1:].abs().sum(dim=1).gt(0).all()  # tokens 2 and 5 do
    assert not rows.table.requires_grad and rows.table.grad is None  # token 3 (not the fit's) stays fixed
    other = FitRowsEmbedding(torch.nn.Embedding(10, 4), torch.tensor([5]))
    other.load_state_dict(rows.state_dict())  # any two id sets read each other's checkpoints
    torch.testing.assert_close(other.rows[0], expected[5])
    restored = rows.restore()
    assert restored is plain and torch.equal(restored.weight.detach(), expected) and restored.weight.requires_grad


def test_a_misspelt_embedding_updates_value_is_refused(encoder) -> None:
    with pytest.raises(AlpacaError, match=r"embedding_updates='some'.*\['seen', 'all'\]"):
        SequenceClassifier(encoder, num_labels=2, optimizer=torch.optim.AdamW, embedding_updates="some")


def test_uniform_mask_dropout_keeps_the_share_and_scale_of_torch_dropout() -> None:
    torch.manual_seed(0)
    layer = UniformMaskDropout(0.25)
    x = torch.ones(1000, 1000)
    y = layer(x)
    kept = (y > 0).float().mean().item()
    assert abs(kept - 0.75) < 0.003 and torch.allclose(y[y > 0], torch.tensor(1 / 0.75))
    assert abs(y.mean().item() - 1.0) < 0.005
    layer.eval()
    assert torch.equal(layer(x), x)
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.1), torch.nn.Sequential(torch.nn.Dropout(0.3)))
    assert use_uniform_mask_dropout(model) == 2
    assert isinstance(model[2][0], UniformMaskDropout) and model[2][0].p == 0.3


@pytest.mark.parametrize("total_norm", [0.5, 1.2, 1e3])  # within the bound (no scaling), just beyond, far beyond
def test_gradient_clipping_matches_torch_exactly(total_norm: float) -> None:
    torch.manual_seed(0)
    grads = [torch.randn(5, 3) for _ in range(3)]
    norm = float(torch.cat([g.flatten() for g in grads]).norm())
    ours, theirs = [], []
    for g in grads:
        for group in (ours, theirs):
            p = torch.nn.Parameter(torch.zeros(5, 3))
            p.grad = g * (total_norm / norm)
            group.append(p)
    optim.clip_grad_norm(ours, 1.0)
    torch.nn.utils.clip_grad_norm_(theirs, 1.0)
    for a, b in zip(ours, theirs):
        assert torch.equal(a.grad, b.grad)
    assert sum(float(p.grad.norm()) ** 2 for p in ours) ** 0.5 == pytest.approx(min(total_norm, 1.0), rel=1e-4)
