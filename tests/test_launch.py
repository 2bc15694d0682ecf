"""experiments/launch.py: the benchmark's runs as one Hydra multirun through the job-list sweeper
(hydra_plugins/alpaca_job_list) and Hydra's joblib launcher, on the tiny model."""

from __future__ import annotations

import json
import os

import pytest

from experiments.launch import Job, Launch, job_list_yaml
from hydra_plugins.alpaca_job_list.job_list_sweeper import read_jobs
from tests.conftest import tiny_overrides
from tests.test_cli import without_output_dir

pytest.importorskip("hydra_plugins.hydra_joblib_launcher")


def test_job_list_keeps_every_override_intact(tmp_path) -> None:
    overrides = ["stages=[]", "task.label_names=[neg,pos]", 'task.name="a b"', "filters.x.k=1"]
    path = tmp_path / "jobs.yaml"
    path.write_text(job_list_yaml([Job(overrides, tmp_path / "one")]))
    assert read_jobs(path) == [{"name": "one", "overrides": overrides}]


@pytest.mark.slow
def test_launch_runs_failures_and_reuse(synthetic_task, tmp_path) -> None:
    runs = tmp_path / "runs"
    base = without_output_dir(tiny_overrides(synthetic_task, tmp_path)) + ["selftrain.max_rounds=1", "logger=none"]
    jobs = [
        Job([*base, "seed=0"], runs / "good_s0"),
        Job([*base, "seed=1"], runs / "good_s1"),
        Job([*base, "seed=0", "task.label_names=[neg,zzz]"], runs / "bad"),  # 'pos' is not a label: fails
    ]
    launch = Launch(jobs=2, label="test")
    outcomes = launch.run(jobs)

    assert [o.ok for o in outcomes] == [True, True, False]
    assert "DataError" in outcomes[2].error and "'pos'" in outcomes[2].error
    assert [o.job.name for o in launch.failures] == ["bad"]
    for outcome in outcomes[:2]:
        on_disk = json.loads((outcome.job.out_dir / "results.json").read_text())
        assert outcome.results == on_disk and outcome.seconds == on_disk["wall_time_s"] > 0
        assert not list(outcome.job.out_dir.glob("rounds/round_*/model"))  # dropped: the scripts read metrics
    assert outcomes[0].results["seed"] == 0 and outcomes[1].results["seed"] == 1
    # the jobs ran as one joblib multirun, through the job-list sweeper; its job list is kept beside the runs
    log = next(runs.glob(".sweep_test_*.log")).read_text()
    assert "Joblib" in log and "2 to run" not in log and "3 to run, 0 finished earlier" in log
    assert len(read_jobs(next(runs.glob(".jobs_test_*.yaml")))) == 3
    # launcher=joblib shares the cores between its n_jobs=2 workers
    share = max(1, (os.cpu_count() or 1) // 2)
    assert f"cpu_threads: {share}\n" in (runs / "good_s0" / "config_resolved.yaml").read_text()

    again = Launch(jobs=1, label="again")
    second = again.run(jobs)
    assert [o.reused for o in second] == [True, True, False]  # only the failed job runs again
    assert not second[2].ok and [o.job.name for o in again.failures] == ["bad"]
    assert "1 to run, 0 finished earlier" in next(runs.glob(".sweep_again_*.log")).read_text()  # only it was sent


def test_reuse_only_starts_nothing(tmp_path) -> None:
    launch = Launch(label="rebuild", reuse_only=True)
    outcomes = launch.run([Job(["seed=0"], tmp_path / "runs" / "missing")])
    assert outcomes[0].error.startswith("not run") and not (tmp_path / "runs").exists()


def test_a_rebuilt_report_claims_no_launcher_or_wall_time() -> None:
    from experiments.benchmark import header
    from experiments.launch import REBUILT

    ran = {"device": "x86_64, 2 CPU cores", "jobs": 2, "launcher": "joblib", "wall_time_s": 600.0}
    assert header(ran) == "Ran on x86_64, 2 CPU cores, 2 run(s) at a time through launcher=joblib; wall time 10.0 min."
    rebuilt = header({**ran, "device": REBUILT, "jobs": 1, "launcher": "local", "wall_time_s": 0.4})
    assert "wall time" not in rebuilt and "at a time" not in rebuilt and "s/run" in rebuilt
