"""Entry point: ``alpaca-train`` or ``python -m alpaca_lightning.train`` (a Hydra app; conf/train.yaml).

Returns the optimized metric (``optimized_metric``, a validation score by default) so Hydra sweepers can use it.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from alpaca_lightning.artifacts import atomic_write_text
from alpaca_lightning.assets import REPO_ROOT, register_resolvers
from alpaca_lightning.errors import AlpacaError, ConfigError
from alpaca_lightning.pipeline import run
from alpaca_lightning.preemption import EXIT_PREEMPTED, Preempted, install_handlers
from alpaca_lightning.run_info import refuse_moved_settings

register_resolvers()


# strategies that start their processes from inside this one; plain `ddp` re-runs the whole command per rank
IN_PROCESS_STRATEGIES = ("ddp_fork", "ddp_spawn", "ddp_notebook")


def check_multirun_strategy(cfg: DictConfig) -> None:
    """Under --multirun, Lightning's `ddp` would re-launch the whole sweep in every rank: refuse it up front, unless
    a cluster launcher (submitit) starts one task per rank itself."""
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return
    strategy = str(cfg.hardware.get("strategy", "auto"))
    launcher = str(hydra_cfg.launcher.get("_target_", ""))
    if strategy.startswith("ddp") and strategy not in IN_PROCESS_STRATEGIES and "submitit" not in launcher:
        raise AlpacaError(
            f"hardware.strategy={strategy} inside --multirun would re-launch the whole sweep in every process. "
            f"Sweep with one process per job (hardware=cpu or gpu), use hardware.strategy=ddp_spawn, or launch "
            f"on a cluster with hydra/launcher=submitit_slurm (one task per GPU)."
        )


def record_error(output_dir: Path, err: BaseException) -> None:
    """error.txt in the run folder: what alpaca-report lists for a failed run of a sweep (a re-run removes it)."""
    with_traceback = not isinstance(err, AlpacaError)
    text = "".join(traceback.format_exception(err)) if with_traceback else f"{type(err).__name__}: {err}\n"
    atomic_write_text(output_dir / "error.txt", text)


def main() -> float | None:
    """``alpaca-train``: refuse settings that moved before Hydra reads the command line, then run the app."""
    try:
        refuse_moved_settings(sys.argv[1:])
    except ConfigError as err:
        print(f"alpaca-train: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    return train_app()


@hydra.main(version_base="1.3", config_path=str(REPO_ROOT / "conf"), config_name="train")
def train_app(cfg: DictConfig) -> float | None:
    install_handlers()  # SIGTERM / SIGUSR1: checkpoint and stop (alpaca_lightning/preemption.py)
    output_dir = Path(cfg.paths.output_dir)
    (output_dir / "error.txt").unlink(missing_ok=True)  # from an earlier failed attempt of this run
    try:
        check_multirun_strategy(cfg)
        results = run(cfg)
    except Preempted as stop:
        # One line saying what was kept and how to go on; a sweep stops here too and resumes the same way.
        print(f"alpaca-train: {stop}. Resume with the same command and output folder "
              f"({cfg.paths.output_dir}); exit status {EXIT_PREEMPTED} (requeue).", file=sys.stderr)
        raise SystemExit(EXIT_PREEMPTED) from None
    except Exception as err:
        record_error(output_dir, err)
        if not isinstance(err, AlpacaError):
            raise
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # Hydra records the job as failed, and the sweep's other jobs go on
        # A problem the user can fix: the message names it and the fix; a traceback would only bury it.
        print(f"alpaca-train: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    metric = cfg.get("optimized_metric")
    if not metric:
        return None
    section, _, name = metric.partition(":")
    return results[section][name]


if __name__ == "__main__":
    main()
