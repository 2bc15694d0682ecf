"""Rank helpers that work inside and outside a Lightning Trainer, and under every launcher.

Under the ``ddp`` strategy the whole script runs once per process, so shared artifacts are written by global rank
zero only, followed by a barrier. Under ``ddp_fork``/``ddp_spawn`` (and single-process runs) this code runs in the
one parent process, where there is no process group and both helpers are trivial.
"""

from __future__ import annotations

import torch.distributed as dist
from pytorch_lightning.utilities.rank_zero import rank_zero_only


def is_global_zero() -> bool:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return rank_zero_only.rank == 0


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
