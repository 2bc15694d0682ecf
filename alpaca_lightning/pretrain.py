"""The optional self-supervised stage: continue MLM (or MLM+NSP) training on the task's own text, then hand
the encoder to the classifier as a ``from_pretrained`` folder (``pretrain/encoder``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from transformers import PreTrainedTokenizerBase

from alpaca_lightning.artifacts import atomic_directory, atomic_write_json, is_complete
from alpaca_lightning.console import info
from alpaca_lightning.data.pretraining import PretrainDataModule
from alpaca_lightning.distributed import barrier, is_global_zero
from alpaca_lightning.models.pretraining import SelfSupervisedModule
from alpaca_lightning.trainer import TrainerFactory


@torch.no_grad()
def held_out_loss(
    module: SelfSupervisedModule, datamodule: PretrainDataModule, seed: int, max_batches: int = 8
) -> float:
    """Mean loss on the first batches, with masks fixed by ``seed``: comparable before and after training."""
    module.eval()
    torch.manual_seed(seed)
    loader = torch.utils.data.DataLoader(
        datamodule.dataset, batch_size=datamodule.batch_size, shuffle=False, collate_fn=datamodule.collator
    )
    losses = []
    for i, batch in enumerate(loader):
        if i >= max_batches:
            break
        losses.append(float(module.model(**batch).loss))
    module.train()
    return sum(losses) / len(losses)


def run_pretraining(
    make_module: Callable[..., SelfSupervisedModule],
    data_kwargs: dict[str, Any],
    texts: list[str],
    tokenizer: PreTrainedTokenizerBase,
    backbone_path: str,
    trainers: TrainerFactory,
    run_dir: Path,
    seed: int,
    max_epochs: int,
    max_steps: int = -1,
) -> str:
    target = Path(run_dir) / "pretrain" / "encoder"
    if is_complete(target):
        info(f"pretraining: complete on disk at {target}, skipped (resume)")
        return str(target)
    pl.seed_everything(seed, workers=True, verbose=False)
    module = make_module(model_path=backbone_path)
    module.stage_name = "pretrain"
    datamodule = PretrainDataModule(texts, tokenizer, next_sentence=module.uses_next_sentence, seed=seed, **data_kwargs)
    before = held_out_loss(module, datamodule, seed)
    info(f"pretraining on {len(datamodule.dataset)} sequences of the task's text")
    trainer = trainers.fit("pretrain", max_epochs=max_epochs, max_steps=max_steps, use_distributed_sampler=True)
    trainer.fit(module, datamodule=datamodule)
    after = held_out_loss(module, datamodule, seed)
    info(f"pretraining loss on fixed masks: {before:.3f} -> {after:.3f}")
    if is_global_zero():
        with atomic_directory(target) as tmp:
            module.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            atomic_write_json(tmp / "pretrain_metrics.json",
                              {"loss_before": before, "loss_after": after, "sequences": len(datamodule.dataset)})
    barrier()
    return str(target)
