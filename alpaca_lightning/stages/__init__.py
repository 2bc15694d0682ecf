"""Round-0 stages: steps that turn the encoder into a better starting point before the supervised round 0.

``stages=[mlm]`` continues masked-LM training on the task's text; stages run in list order, each one starting
from the encoder that the previous one produced, and round 0 trains its classifier from the last one. A stage is
one class with ``run(ctx, encoder_path, folder) -> encoder_path`` plus one YAML file in conf/stages/; it writes its
output through ``alpaca_lightning.once`` so that it runs once per run and is reused on resume.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from alpaca_lightning.context import RunContext


class Stage:
    name = "stage"
    # The learning rate of the fine-tuning that descends from this stage's output (round 0 and the students);
    # None: no preference. selftrain.supervised_lr and selftrain.student_lr, when set, override it.
    finetune_lr: float | None = None

    def check(self, ctx: RunContext) -> None:
        """Fail before any training when this run's task cannot serve the stage."""

    def run(self, ctx: RunContext, encoder_path: str, folder: Path) -> str:
        """Train from ``encoder_path`` into ``folder`` (this stage's own, ``<run>/stages/<i>_<name>``); return a
        ``from_pretrained`` folder with the new encoder."""
        raise NotImplementedError


def run_stages(stages: Sequence[Stage], ctx: RunContext, encoder_path: str, root: Path | None = None) -> str:
    """Run the stages in order from ``encoder_path``, into ``root`` (default ``<run>/stages``); return the final
    encoder (``encoder_path`` itself when there is no stage)."""
    root = ctx.run_dir / "stages" if root is None else root
    for index, stage in enumerate(stages):
        encoder_path = stage.run(ctx, encoder_path, root / f"{index}_{stage.name}")
    return encoder_path
