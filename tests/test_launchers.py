"""A 2 x 2 multirun through Hydra's joblib launcher (parallel worker processes), then alpaca-report's table against
the means and stds computed by hand from the runs' own results.json."""

from __future__ import annotations

import json
import statistics

import pytest

from alpaca_lightning import aggregate
from tests.conftest import tiny_overrides
from tests.test_cli import cli, without_output_dir

pytest.importorskip("hydra_plugins.hydra_joblib_launcher")


@pytest.mark.slow
def test_joblib_multirun_then_alpaca_report(synthetic_task, tmp_path) -> None:
    sweep = tmp_path / "sweep"
    overrides = without_output_dir(tiny_overrides(synthetic_task, tmp_path)) + [
        "launcher=joblib", "hydra.launcher.n_jobs=2", "selftrain.max_rounds=1", f"hydra.sweep.dir={sweep}",
        "seed=0,1", "student_init=continue,reset", "--multirun",
    ]
    done = cli(overrides, tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Joblib" in done.stdout + done.stderr  # the joblib launcher ran the jobs
    runs = sorted(sweep.glob("*/results.json"))
    assert len(runs) == 4

    by_init: dict[str, list[float]] = {}
    for path in runs:
        config = aggregate.find_runs([path.parent])[0].config
        by_init.setdefault(config["student_init._target_"], []).append(
            json.loads(path.read_text())["best"]["test/acc"])
    summary = aggregate.report([sweep], tmp_path / "report")
    assert summary["keys"] == ["student_init._target_"] and not summary["problems"]
    for row in summary["rows"]:
        values = by_init[row["group"][0]]
        mean, std = row["best:test/acc"]
        assert row["n"] == 2
        assert mean == pytest.approx(statistics.mean(values)) and std == pytest.approx(statistics.stdev(values))
