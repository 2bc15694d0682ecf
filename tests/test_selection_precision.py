"""experiments/selection_precision.py on a finished tiny run: every kept teacher round is scored against gold."""

from __future__ import annotations

import sys

import numpy as np

from alpaca_lightning.pipeline import load_splits
from alpaca_lightning.selftrain.calibration import expected_precision
from experiments import selection_precision


def test_selections_are_scored_against_the_pool_gold_labels(tiny_run_once, monkeypatch, capsys) -> None:
    cfg, run_dir = tiny_run_once.cfg, tiny_run_once.out
    probs = np.load(run_dir / "rounds" / "round_0" / "teacher_predictions" / "pool" / "probs.npy")
    right = probs.argmax(1) == load_splits(cfg).pool.labels
    top = selection_precision.top_k_per_class(probs, 10)
    assert len(top) == 20 and len(set(top.tolist())) == 20
    assert probs.max(1)[top].min() >= np.sort(probs.max(1))[::-1][len(probs) // 2]  # confident ones, not random
    monkeypatch.setattr(sys, "argv", ["selection_precision.py", str(run_dir), "--k", "10", "--threshold", "0.0"])
    assert selection_precision.main() == 0
    table = capsys.readouterr().out
    rows = {line.split(" | ")[1]: line for line in table.splitlines()[2:]}
    assert sorted(rows) == ["0", "1"]  # the teachers of rounds 1 and 2; the last round taught nobody
    assert rows["0"].startswith(
        f"| {run_dir.name} | 0 | {right.mean():.1%} | {right[top].mean():.1%} | {right.mean():.1%} of {len(probs)} |")
    # the estimate that selftrain.min_precision reads, of the threshold's selection (here all of the pool)
    val = np.load(run_dir / "rounds" / "round_0" / "teacher_predictions" / "validation" / "probs.npy")
    expected = expected_precision(probs, val, load_splits(cfg).validation.labels)
    assert rows["0"].endswith(f"| {expected:.1%} |") and expected != right.mean()
