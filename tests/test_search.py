"""The Optuna search (hparams_search=self_training): a sweep killed during its second trial, then the same command
again, runs exactly the missing trials, re-running the interrupted one with its parameters in its own folder."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import tiny_overrides
from tests.test_cli import cli, without_output_dir

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")

# A Hydra callback that SIGKILLs the sweep process as job N starts: a real, abrupt interruption mid-search.
KILLER = '''
import os, signal
from hydra.experimental.callback import Callback

class KillAtJob(Callback):
    def __init__(self, job_num):
        self.job_num = job_num

    def on_job_start(self, config, **kwargs):
        if config.hydra.job.num == self.job_num:
            os.kill(os.getpid(), signal.SIGKILL)
'''


def search_overrides(task: dict[str, Path], tmp_path: Path) -> list[str]:
    tiny = [o for o in without_output_dir(tiny_overrides(task, tmp_path)) if not o.startswith("filters")]
    return ["--multirun", *tiny,
        "hparams_search=self_training", f"hydra.sweep.dir={tmp_path}/search", "hydra.sweeper.n_trials=3",
        "selftrain.supervised_epochs=2", "selftrain.max_rounds=1",
    ]


def trials(db: Path) -> list[tuple[int, str, dict[str, float]]]:
    """(number, state, params) of every trial, read straight from the SQLite storage."""
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT trial_id, number, state FROM trials ORDER BY number").fetchall()
        params = con.execute("SELECT trial_id, param_name, param_value FROM trial_params").fetchall()
    by_trial: dict[int, dict[str, float]] = {}
    for trial_id, name, value in params:
        by_trial.setdefault(trial_id, {})[name] = value
    return [(number, state, by_trial.get(trial_id, {})) for trial_id, number, state in rows]


@pytest.mark.slow
def test_a_killed_search_resumes_with_only_the_missing_trials(synthetic_task, tmp_path) -> None:
    (tmp_path / "killer.py").write_text(KILLER)  # importable: the CLI runs with tmp_path as its working folder
    search, db = tmp_path / "search", tmp_path / "search" / "optuna.db"
    overrides = search_overrides(synthetic_task, tmp_path)

    killed = cli(overrides + ["+hydra.callbacks.kill._target_=killer.KillAtJob", "+hydra.callbacks.kill.job_num=1"],
                 tmp_path)
    assert killed.returncode == -9, killed.stdout[-2000:] + killed.stderr[-2000:]
    before = trials(db)
    assert [(n, s) for n, s, _ in before] == [(0, "COMPLETE"), (1, "RUNNING")]
    assert (search / "0" / "results.json").is_file() and not (search / "1" / "results.json").exists()
    first_result = (search / "0" / "results.json").stat().st_mtime_ns

    resumed = cli(overrides, tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    log = resumed.stdout + resumed.stderr
    assert "1 trials finished, 1 interrupted ones re-queued [1], 2 to run from trial 1" in log
    after = trials(db)
    assert [(n, s) for n, s, _ in after] == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "COMPLETE")]
    assert after[1][2] == before[1][2]  # the interrupted trial ran again with the parameters it had
    assert after[2][2] != after[0][2]  # the restarted sampler did not draw trial 0's parameters again
    assert (search / "0" / "results.json").stat().st_mtime_ns == first_result  # trial 0 was not redone
    assert sorted(p.name for p in search.iterdir() if p.name.isdigit()) == ["0", "1", "2"]
    for number, _, params in after:  # job folder N ran trial N, and Optuna got its best validation score
        overrides_used = (search / str(number) / ".hydra" / "overrides.yaml").read_text()
        assert f"student_init={student_init(params)}" in overrides_used
    values = [json.loads((search / str(n) / "results.json").read_text())["best"]["val/acc"] for n in range(3)]
    assert trial_values(db) == pytest.approx(values)

    again = cli(overrides, tmp_path)  # a finished search runs nothing more
    assert again.returncode == 0 and "3 trials finished, 0 interrupted ones re-queued [], 0 to run" in (
        again.stdout + again.stderr)
    assert len(trials(db)) == 3


def student_init(params: dict[str, float]) -> str:
    """A categorical parameter is stored as the index of its choice."""
    return ["continue", "reset"][int(params["student_init"])]


def trial_values(db: Path) -> list[float]:
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "SELECT t.number, v.value FROM trial_values v JOIN trials t USING (trial_id) ORDER BY t.number"
        ).fetchall()
    return [value for _, value in rows]


def test_the_search_config_sweeps_existing_keys_on_validation() -> None:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from tests.conftest import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=["hparams_search=self_training"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("ResumableOptunaSweeper") and sweeper.direction == "maximize"
    assert cfg.optimized_metric.split(":")[1].startswith("val/")  # a validation score, never test
    missing = [key for key in sweeper.params if OmegaConf.select(cfg, key, default="MISSING") == "MISSING"]
    assert not missing, f"hparams_search/self_training.yaml searches keys the default config lacks: {missing}"
