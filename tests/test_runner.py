"""experiments/runner.py's RunPool on worker processes, with a stand-in for training (no models, no data)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from experiments.runner import Job, RunPool


def fake_run(overrides: list[str], out_dir: Path) -> dict[str, Any]:
    """Module level, so that spawned workers can unpickle it; fails on request."""
    if "fail=true" in overrides:
        raise ValueError("this configuration is broken")
    return {"overrides": overrides, "worker_pid": os.getpid()}


def test_run_pool_records_a_failure_and_finishes_the_others(tmp_path) -> None:
    finished = tmp_path / "earlier"
    finished.mkdir()
    (finished / "results.json").write_text(json.dumps({"from": "an earlier invocation"}))
    jobs = [Job(["a=1"], tmp_path / "one"), Job(["fail=true"], tmp_path / "bad"), Job(["a=2"], tmp_path / "two"),
            Job(["fail=true"], finished)]  # fmt: skip
    with RunPool(jobs=2, job_fn=fake_run, label="test") as pool:
        outcomes = pool.run(jobs)
    one, bad, two, earlier = outcomes
    assert one.ok and one.results["overrides"] == ["a=1"] and two.results["overrides"] == ["a=2"]
    assert one.results["worker_pid"] != os.getpid()  # ran in a worker process
    assert not bad.ok and bad.error == "ValueError: this configuration is broken"
    assert "Traceback" in (tmp_path / "bad" / "error.txt").read_text()
    assert earlier.reused and earlier.results == {"from": "an earlier invocation"}  # not rerun
    assert [o.job.name for o in pool.failures] == ["bad"] and pool.reused == ["earlier"]


def test_run_pool_in_process(tmp_path) -> None:
    pool = RunPool(jobs=1, job_fn=fake_run)
    with pool:
        (outcome,) = pool.run([Job(["a=1"], tmp_path / "one")])
    assert outcome.ok and outcome.results["worker_pid"] == os.getpid()
