"""Round-0 stages: steps that turn the encoder into a better starting point before the supervised round 0.

``stages=[mlm]`` continues masked-LM training on the task's text; stages run in list order, each one starting
from the encoder that the previous one produced, and round 0 trains its classifier from the last one. A stage is
one class with ``run(ctx, encoder_path, folder) -> encoder_path`` plus one YAML file in conf/stages/; it writes its output
through ``alpaca_lightning.once`` so that it runs once per run and is reused on resume.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from alpaca_lightning.context import RunContext


class Stage:
    name = "stage"
    # The learning rate of the fine-tuning that descends from this stage's output (round 0 and the students);
    # None: no preference. selftrain.supervised_lr and selftrain.student_lr, when set, override it.
    finetune_lr: float | None = None

    def run(self, ctx: RunContext, encoder_path: str, folder: Path) -> str:
        """Train from ``encoder_path`` into ``folder`` (this stage's own, ``<run>/stages/<i>_<name>``); return a
        ``from_pretrained`` folder with the new encoder."""
        raise NotImplementedError


def run_stages(stages: Sequence[Stage], ctx: RunContext, root: Path | None = None) -> RunContext:
    """Run the stages in order, into ``root`` (default ``<run>/stages``); the returned context carries the final
    encoder, and the fine-tuning learning rate of the last stage that names one where the config sets none."""
    root = ctx.run_dir / "stages" if root is None else root
    for index, stage in enumerate(stages):
        folder = root / f"{index}_{stage.name}"
        ctx = ctx.with_encoder(stage.run(ctx, ctx.encoder_path, folder))
    preferred = [stage.finetune_lr for stage in stages if stage.finetune_lr is not None]
    if preferred:
        ctx = replace(ctx, supervised_lr=ctx.supervised_lr or preferred[-1], student_lr=ctx.student_lr or preferred[-1])
    return ctx
