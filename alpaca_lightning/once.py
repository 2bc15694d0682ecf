"""Do a unit of work once per run: the single "train (or predict) once, save, mark COMPLETE, barrier" step.

Every artifact that later steps reuse (a stage's encoder, a round, a teacher's model or predictions) goes through
``produce_once``. A re-run with the same output folder finds the COMPLETE marker and reuses the artifact; a crash
leaves only a temporary folder, never one that looks finished. Modules are built by ``seeded_build``: the seed is
set right before the weights exist, so a fresh head never depends on what ran before it (teacher order, resume).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytorch_lightning as pl

from alpaca_lightning.artifacts import atomic_directory, is_complete
from alpaca_lightning.console import info
from alpaca_lightning.distributed import barrier, is_global_zero
from alpaca_lightning.killpoints import kill_point
from alpaca_lightning.preemption import discard_resume, stop_if_received, working_on

T = TypeVar("T")


def produce_once(target: Path, compute: Callable[[], T], write: Callable[[T, Path], None], what: str) -> bool:
    """Skip when ``target`` is complete. Otherwise ``compute`` on every process (it may train or predict under
    DDP), then global rank zero ``write``s the result into a temporary folder that becomes ``target`` with a
    COMPLETE marker, and all processes meet at a barrier. Returns True when it computed, False when it reused.
    A fit inside ``compute`` that is pre-empted checkpoints into this unit's resume area (``preemption``)."""
    target = Path(target)
    if is_complete(target):
        info(f"{what}: complete on disk at {target}, reused")
        return False
    stop_if_received(f"before {what} started")
    kill_point(f"unit-start {target}")
    with working_on(target):
        result = compute()
    if is_global_zero():
        with atomic_directory(target) as tmp:
            write(result, tmp)
    barrier()
    discard_resume(target)
    kill_point(f"unit-done {target}")
    return True


def seeded_build(seed: int, build: Callable[[], T]) -> T:
    pl.seed_everything(seed, workers=True, verbose=False)
    return build()


def train_once(
    target: Path,
    seed: int,
    build: Callable[[], T],
    fit: Callable[[T], None],
    save: Callable[[T, Path], None],
    what: str,
) -> Path:
    """``produce_once`` for a model: seed, build, fit, save into ``target``."""

    def compute() -> T:
        module = seeded_build(seed, build)
        fit(module)
        return module

    produce_once(target, compute, save, what)
    return Path(target)
