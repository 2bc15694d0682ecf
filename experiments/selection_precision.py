"""How right other pseudo-label selections would have been, read from finished runs' teacher predictions.

    ALPACA_DATA_DIR=../shared/data python experiments/selection_precision.py \
        experiments/results/benchmark_cpu/runs/sst2_K8_selftrain_s*

For every run folder and every teacher round whose pool predictions were kept
(``rounds/round_<r>/teacher_predictions/pool/probs.npy``: round r's model as the teacher of round r + 1), the
predictions are scored against the pool's gold labels: all of them, the k most confident per predicted class, and
those at or above a confidence threshold; beside the last, the precision the run itself expected of that selection
(``pseudo/expected_precision``: the confidence calibrated on validation, what ``selftrain.min_precision`` reads). The
gold labels are rebuilt from the run's saved config
(``config_resolved.yaml``); only this after-the-fact analysis reads them, never a run. Prints one markdown table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

if __package__ in (None, ""):  # run as `python experiments/selection_precision.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alpaca_lightning.assets import register_resolvers
from alpaca_lightning.console import quiet_libraries
from alpaca_lightning.pipeline import load_splits
from alpaca_lightning.selftrain.calibration import expected_precision
from alpaca_lightning.selftrain.filters import top_per_class


def top_k_per_class(probs: np.ndarray, k: int) -> np.ndarray:
    """Pool positions of the k most confident predictions of each predicted class (the class_balanced filter's
    selection, from the whole pool)."""
    return np.flatnonzero(top_per_class(probs, np.ones(len(probs), dtype=bool), lambda cls, members: min(k, members)))


def selection_rows(run: Path, ks: list[int], threshold: float) -> list[list[str]]:
    splits = load_splits(OmegaConf.load(run / "config_resolved.yaml"))
    gold = splits.pool.labels
    rows = []
    for probs_file in sorted(run.glob("rounds/round_*/teacher_predictions/pool/probs.npy")):
        teacher_round = probs_file.parts[-4].removeprefix("round_")
        probs = np.load(probs_file)
        val_probs = np.load(probs_file.parent.parent / "validation" / "probs.npy")
        right = probs.argmax(1) == gold
        confident = np.flatnonzero(probs.max(1) >= threshold)
        cells = [f"{right.mean():.1%}"]
        cells += [f"{right[top_k_per_class(probs, k)].mean():.1%}" for k in ks]
        cells.append(f"{right[confident].mean():.1%} of {len(confident)}" if len(confident) else "none")
        expected = expected_precision(probs[confident], val_probs, splits.validation.labels)
        cells.append("-" if np.isnan(expected) else f"{expected:.1%}")
        rows.append([run.name, teacher_round, *cells])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (with config_resolved.yaml and rounds/)")
    parser.add_argument("--k", type=int, nargs="+", default=[25, 50, 100], help="top k per predicted class")
    parser.add_argument("--threshold", type=float, default=0.9)
    args = parser.parse_args()
    register_resolvers()
    quiet_libraries()
    header = ["run", "teacher round", "all", *(f"top {k} per class" for k in args.k),
              f"confidence ≥ {args.threshold}", "its expected precision (selftrain.min_precision reads it)"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for run in args.runs:
        lines += ["| " + " | ".join(row) + " |" for row in selection_rows(run, args.k, args.threshold)]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
