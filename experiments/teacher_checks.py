"""Replay teacher_selection=checked's checks and schedule=guarded's sign test on finished runs.

    python experiments/teacher_checks.py <folder of run folders> [more folders or run folders ...]
    e.g. python experiments/teacher_checks.py experiments/results/benchmark_quick/runs

For every run that fused the similarity teacher with the classifier, and for every round k >= 1: the similarity
teacher's gold p-value on validation, its agreement z and its prior distance against round k's teacher (the
classifier as the round calibrated it), whether the shipped conf/teacher_selection/checked.yaml would have let it in,
and the sign test of round k's student against its teacher round on validation. Reads the saved predictions and the
run's splits (the task's data must be where the run read it); trains nothing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import instantiate
from omegaconf import OmegaConf

from alpaca_lightning.assets import register_resolvers
from alpaca_lightning.pipeline import load_splits
from alpaca_lightning.selftrain.calibration import temper
from alpaca_lightning.selftrain.prior import pool_prior
from alpaca_lightning.selftrain.stats import above_chance_p_value, agreement_z, class_share_distance, sign_test

REPO = Path(__file__).resolve().parents[1]


def run_folders(paths: list[Path]) -> list[Path]:
    """The run folders among ``paths`` and their children that hold a similarity teacher's predictions."""
    candidates = [p for path in paths for p in (path, *sorted(path.glob("*")))]
    return [p for p in candidates if (p / "teachers" / "similarity" / "probs.npz").is_file()
            and (p / "rounds.json").is_file()]


def replay(run: Path, checked: Any) -> list[dict[str, Any]]:
    splits = load_splits(OmegaConf.load(run / "config_resolved.yaml"))
    val_gold, labelled = np.asarray(splits.validation.labels), np.asarray(splits.labelled.labels)
    with np.load(run / "teachers" / "similarity" / "probs.npz") as saved:
        similarity = {split: saved[split] for split in saved.files}
    rows = []
    for record in json.loads((run / "rounds.json").read_text())[1:]:
        k, t = record["round"], record["teacher_round"]
        classifier_pool = np.load(run / "rounds" / f"round_{t}" / "teacher_predictions" / "pool" / "probs.npy")
        temperature = record.get("calibration/temperature_classifier")
        prior = pool_prior(None, temper(classifier_pool, temperature) if temperature else classifier_pool, labelled)
        checks = {
            "gold_p": above_chance_p_value(similarity["validation"].argmax(1), val_gold),
            "agreement_z": agreement_z(similarity["pool"].argmax(1), classifier_pool.argmax(1)),
            "prior_distance": class_share_distance(similarity["pool"].argmax(1), prior),
        }
        correct = {r: np.load(run / "rounds" / f"round_{r}" / "predictions.npz")["validation"].argmax(1) == val_gold
                   for r in (t, k)}
        lost, gained, p_value = sign_test(correct[t], correct[k])
        rows.append({"run": run.name, "round": k, "fused": record.get("teachers/fused"),
                     "similarity pool acc": record.get("teacher_similarity/pool_acc"), **checks,
                     "checked lets it in": not checked.failed(checks), "lost/gained on val": f"{lost}/{gained}",
                     "sign test p": p_value})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, help="run folders, or folders of run folders")
    args = parser.parse_args()
    register_resolvers()
    checked = instantiate(OmegaConf.load(REPO / "conf" / "teacher_selection" / "checked.yaml"))
    rows = [row for run in run_folders(args.paths) for row in replay(run, checked)]
    if not rows:
        raise SystemExit(f"no run folder with a similarity teacher's predictions under {[str(p) for p in args.paths]}")
    print("| " + " | ".join(rows[0]) + " |\n|" + "---|" * len(rows[0]))
    for row in rows:
        cells = [f"{v:.3g}" if isinstance(v, float) else str(v) for v in row.values()]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
