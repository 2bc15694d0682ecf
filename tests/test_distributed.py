"""Distributed runs give the single-process answer: same pseudo-labels, same metrics, each example predicted once.

In-process runs use ``ddp_fork`` (real ``ddp`` re-launches the script, which cannot work inside pytest); the real
``ddp`` strategy is exercised through the CLI in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from alpaca_lightning.pipeline import run
from tests.conftest import compose_config, tiny_overrides

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not available")


def _metrics(out) -> list[dict]:
    return json.loads((out / "rounds.json").read_text())


@pytest.fixture(scope="module")
def single_and_ddp(synthetic_task, tiny_run_once, tmp_path_factory):
    ddp = tmp_path_factory.mktemp("ddp_fork")
    run(compose_config(tiny_overrides(synthetic_task, ddp) + ["hardware=ddp_cpu"]))
    return tiny_run_once.out, ddp


def assert_matches_single_process(single: Path, ddp: Path) -> None:
    """The same pseudo-labels and metrics as one process. Not to the last digit: the two processes' gradients of
    each global batch are averaged by an all-reduce, which adds them in another order than one process summing the
    whole batch, so weights and probabilities differ in their last bits. Labels, counts and accuracies (counts of
    right answers over the same examples) come out equal; confidences agree to 1e-4."""
    for k in (1, 2):
        a = pd.read_csv(single / "rounds" / f"round_{k}" / "pseudo_labels.csv")
        b = pd.read_csv(ddp / "rounds" / f"round_{k}" / "pseudo_labels.csv")
        assert a["index"].tolist() == b["index"].tolist()
        assert a["label"].tolist() == b["label"].tolist()
        pd.testing.assert_series_equal(a["confidence"], b["confidence"], atol=1e-4, rtol=0)
    for ra, rb in zip(_metrics(single), _metrics(ddp), strict=True):
        for key in ("val/acc", "val/f1_macro", "test/acc", "test/f1_macro", "pseudo/count", "pseudo/acc", "val/n",
                    "train_size"):
            if key in ra:
                assert ra[key] == pytest.approx(rb[key], abs=1e-6), (ra["round"], key)
    assert json.loads((single / "results.json").read_text())["best_round"] == json.loads(
        (ddp / "results.json").read_text())["best_round"]
    val_single, val_ddp = (np.load(out / "rounds" / "round_0" / "predictions.npz")["validation"] for out in (single, ddp))
    assert len(val_single) == 60  # every validation example once: no sampler padding in the metrics
    assert (val_single.argmax(1) == val_ddp.argmax(1)).all()
    assert abs(val_single - val_ddp).max() < 1e-4


def assert_each_pool_example_predicted_once(ddp: Path) -> None:
    shards = ddp / "rounds" / "round_0" / "teacher_predictions" / ".pool.shards"  # round 1's teacher is round 0
    parts = [torch.load(shards / f"rank{r}-of-2.pt") for r in range(2)]
    assert all(len(p["index"]) > 0 for p in parts)  # both processes did real work
    index = torch.cat([p["index"] for p in parts])
    assert sorted(index.tolist()) == list(range(200))  # the whole pool, no padding duplicates, nothing missing


def test_ddp_predicts_each_pool_example_exactly_once(single_and_ddp) -> None:
    assert_each_pool_example_predicted_once(single_and_ddp[1])


def test_ddp_matches_single_process(single_and_ddp) -> None:
    assert_matches_single_process(*single_and_ddp)


@pytest.mark.slow
def test_real_ddp_strategy_through_the_cli(synthetic_task, tiny_run_once, tmp_path) -> None:
    """strategy=ddp re-launches the script once per process: the same guarantees as the in-process ddp_fork run."""
    overrides = tiny_overrides(synthetic_task, tmp_path) + ["hardware=ddp_cpu", "hardware.strategy=ddp"]
    overrides = [o for o in overrides if not o.startswith("paths.output_dir")]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    for var in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "NODE_RANK"):
        env.pop(var, None)
    done = subprocess.run(
        [sys.executable, "-m", "alpaca_lightning.train", *overrides],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert json.loads((tmp_path / "results.json").read_text())["rounds_run"] == 3
    assert_each_pool_example_predicted_once(tmp_path)
    assert_matches_single_process(tiny_run_once.out, tmp_path)
    assert not list(tmp_path.glob(".pl_hydra*"))
