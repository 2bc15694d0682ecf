"""The self-supervised stage: continue MLM (or MLM+NSP) training on the task's own text, then hand the encoder
to the next stage or to round 0 as a ``from_pretrained`` folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from alpaca_lightning.artifacts import atomic_write_json
from alpaca_lightning.console import info
from alpaca_lightning.context import RunContext
from alpaca_lightning.data.pretraining import PretrainDataModule
from alpaca_lightning.models.pretraining import SelfSupervisedModule
from alpaca_lightning.once import produce_once, seeded_build
from alpaca_lightning.stages import Stage


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


class SelfSupervisedStage(Stage):
    units = ("sentence", "word")  # it reads the task's text only, whatever a unit is
    def __init__(
        self,
        module: Callable[..., SelfSupervisedModule],
        data: dict[str, Any],
        max_epochs: int = 1,
        max_steps: int = -1,
        name: str = "mlm",
    ) -> None:
        self.make_module = module
        self.data_kwargs = dict(data)
        self.max_epochs = max_epochs
        self.max_steps = max_steps
        self.name = name

    def run(self, ctx: RunContext, encoder_path: str, folder: Path) -> str:
        def train() -> tuple[SelfSupervisedModule, dict[str, Any]]:
            module = seeded_build(ctx.seed, lambda: self.make_module(model_path=encoder_path))
            module.stage_name = self.name
            datamodule = PretrainDataModule(ctx.own_text(), ctx.tokenizer, next_sentence=module.uses_next_sentence,
                                            seed=ctx.seed, **self.data_kwargs)
            before = held_out_loss(module, datamodule, ctx.seed)
            info(f"{self.name}: self-supervised training on {len(datamodule.dataset)} sequences of the task's text")
            trainer = ctx.trainers.fit(self.name, max_epochs=self.max_epochs, max_steps=self.max_steps,
                                       use_distributed_sampler=True)
            trainer.fit(module, datamodule=datamodule)
            after = held_out_loss(module, datamodule, ctx.seed)
            info(f"{self.name}: loss on fixed masks {before:.3f} -> {after:.3f}")
            return module, {"loss_before": before, "loss_after": after, "sequences": len(datamodule.dataset)}

        def save(result: tuple[SelfSupervisedModule, dict[str, Any]], tmp: Path) -> None:
            module, metrics = result
            module.save_pretrained(tmp)
            ctx.tokenizer.save_pretrained(tmp)
            atomic_write_json(tmp / "stage_metrics.json", metrics)

        produce_once(folder, train, save, f"stage '{self.name}'")
        return str(folder)
