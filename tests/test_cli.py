"""The console entry point: --multirun sweeps, clear errors with a non-zero exit, offline W&B logging."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from alpaca_lightning.pipeline import run
from tests.conftest import compose_config, outcome, tiny_overrides


def cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, "-m", "alpaca_lightning.train", *args], cwd=cwd, capture_output=True, text=True,
        timeout=900, env=env,
    )


def without_output_dir(overrides: list[str]) -> list[str]:
    return [o for o in overrides if not o.startswith(("paths.output_dir", "hydra.run.dir"))]


@pytest.mark.slow
def test_multirun_jobs_give_the_in_process_results(synthetic_task, tiny_run_once, tmp_path) -> None:
    """Each job of a --multirun (one process, one job after the other) gives what run(cfg) gives in-process for its
    config, to the last digit: job 1 (3 rounds) the shared tiny run, job 0 (2 rounds) that run's first two rounds."""
    overrides = without_output_dir(tiny_overrides(synthetic_task, tmp_path))
    overrides += [f"hydra.sweep.dir={tmp_path}/sweep", "selftrain.max_rounds=1,2", "--multirun"]
    done = cli(overrides, tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    short, full = (outcome(tmp_path / "sweep" / str(job)) for job in (0, 1))
    assert full == outcome(tiny_run_once.out)
    assert short["results"]["rounds_run"] == 2 and short["results"]["best_round"] == 1
    without_flag = [{k: v for k, v in r.items() if k != "best"} for r in full["rounds"][:2]]
    assert [{k: v for k, v in r.items() if k != "best"} for r in short["rounds"]] == without_flag


def test_multirun_with_the_relaunching_ddp_strategy_fails_fast(synthetic_task, tmp_path) -> None:
    overrides = without_output_dir(tiny_overrides(synthetic_task, tmp_path))
    overrides += ["hardware=ddp_cpu", "hardware.strategy=ddp", f"hydra.sweep.dir={tmp_path}/sweep", "seed=0,1",
                  "--multirun"]
    done = cli(overrides, tmp_path)
    assert done.returncode != 0
    assert "re-launch the whole sweep" in done.stderr and "submitit_slurm" in done.stderr
    assert not list((tmp_path / "sweep").rglob("config_resolved.yaml"))  # refused before any run started


def test_bad_input_exits_non_zero_with_the_fix(synthetic_task, tmp_path) -> None:
    overrides = tiny_overrides(synthetic_task, tmp_path) + [f"task.sources.train.path={tmp_path}/missing.csv"]
    done = cli(without_output_dir(overrides) + [f"hydra.run.dir={tmp_path}/run"], tmp_path)
    assert done.returncode != 0
    assert f"Data file not found: {tmp_path}/missing.csv" in done.stderr
    done = cli(["selftrain.max_roundz=2"], tmp_path)
    assert done.returncode != 0 and "max_roundz" in done.stderr


def test_wandb_logger_works_offline(synthetic_task, tmp_path) -> None:
    from tests.test_loggers import round_values, wandb_history

    overrides = tiny_overrides(synthetic_task, tmp_path) + ["logger=wandb", "selftrain.max_rounds=1"]
    run(compose_config(overrides))  # conftest sets WANDB_MODE=offline and points W&B's folders at tmp_path
    offline_runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1  # every stage of a single-process run logs into one W&B run
    logged = [row["round/val/acc"] for row in wandb_history(offline_runs[0]) if "round/val/acc" in row]
    assert logged == pytest.approx(round_values(tmp_path))  # each round's validation accuracy, as rounds.json has it
