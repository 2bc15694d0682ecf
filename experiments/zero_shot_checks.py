"""How often does teacher_selection=checked's gold check let the zero-shot similarity teacher in, and how good is
the teacher where it does? Label names as the only prompt (task.prompt=null), on the development tasks.

    python experiments/zero_shot_checks.py                      # sst2 agnews trec6 r8 newsgroups20, seeds 0-4, K=8
    python experiments/zero_shot_checks.py --datasets r8 --seeds 0 1 --out /tmp/zero_shot

For each task and seed: the benchmark's split (K labels and K validation examples per class, a pool of 1,000), the
similarity teacher on the backbone as loaded (encoder=backbone: the round-0 stages, which train the default round0
encoder, are not run, so this costs seconds), once with the label names alone and once with the shipped templates.
It reports the teacher's accuracy on the pool (hidden gold: a diagnosis, never a decision), its accuracy on the gold
labels a run may judge it by (validation, and the labelled set, which the backbone never trained on), and the gold
check's p-value and verdict on validation alone and on both sets. Trains nothing; MR is left out (held out).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from alpaca_lightning.assets import register_resolvers
from alpaca_lightning.pipeline import build_context, load_splits, task_kind
from alpaca_lightning.precision import plan_precision
from alpaca_lightning.selftrain.plan import TrainingPlan
from alpaca_lightning.selftrain.similarity import LabelSimilarityTeacher
from alpaca_lightning.selftrain.stats import above_chance_p_value

if __package__ in (None, ""):  # run as a script: make `experiments` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from experiments.benchmark import MAX_LENGTH, VARIANTS  # noqa: E402  the benchmark's token caps and tasks

REPO = Path(__file__).resolve().parents[1]
DATASETS = VARIANTS["devset"].datasets


def split_config(dataset: str, seed: int, k: int, out: Path):
    overrides = [f"task={dataset}", "task.prompt=null", f"seed={seed}", f"split.labels_per_class={k}",
                 f"split.val_per_class={k}", "split.val_size=null", "split.pool_size=1000", "split.test_size=1000",
                 f"data.max_length={MAX_LENGTH[dataset]}", "logger=none", f"paths.output_dir={out}"]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def probe(dataset: str, seed: int, k: int, out: Path, templates: list[list[str]]) -> list[dict]:
    cfg = split_config(dataset, seed, k, out)
    splits = load_splits(cfg)  # the pool's gold labels are read here for the diagnosis only
    precision = plan_precision("32-true", "cpu")
    ctx = build_context(cfg, task_kind(cfg), splits, out, precision)
    plan = TrainingPlan(ctx.backbone_path, None, None, 1, 1)
    gold = {split: np.asarray(getattr(splits, split).labels) for split in ("labelled", "validation", "pool")}
    rows = []
    for phrasing in templates:
        teacher = LabelSimilarityTeacher(encoder="backbone", templates=phrasing)
        folder = out / "teachers" / "similarity"
        probs = {split: p.probs for split, p in teacher.predict(ctx, plan, Path(".")).items()}
        for path in sorted(folder.rglob("*"), reverse=True):  # the next phrasing predicts afresh
            path.unlink() if path.is_file() else path.rmdir()
        folder.rmdir()
        predicted = {split: p.argmax(1) for split, p in probs.items()}
        both = np.concatenate([predicted["validation"], predicted["labelled"]])
        both_gold = np.concatenate([gold["validation"], gold["labelled"]])
        rows.append({
            "dataset": dataset, "seed": seed, "templates": len(phrasing),
            "pool acc": float((predicted["pool"] == gold["pool"]).mean()),
            "val acc": float((predicted["validation"] == gold["validation"]).mean()),
            "val p": above_chance_p_value(predicted["validation"], gold["validation"]),
            "val+labelled p": above_chance_p_value(both, both_gold),
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=DATASETS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--out", type=Path, default=REPO / "experiments" / "results" / "zero_shot_checks")
    args = parser.parse_args()
    register_resolvers()
    shipped = list(OmegaConf.load(REPO / "conf" / "teachers" / "similarity.yaml").similarity.templates)
    alpha = float(OmegaConf.load(REPO / "conf" / "teacher_selection" / "checked.yaml").gold_alpha)
    with tempfile.TemporaryDirectory() as scratch:  # run folders of the context: splits, backbone, nothing to keep
        rows = [row for dataset in args.datasets for seed in args.seeds
                for row in probe(dataset, seed, args.k, Path(scratch) / f"{dataset}_s{seed}", [["{label}"], shipped])]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rows.json").write_text(json.dumps(rows, indent=1))
    lines = [f"gold check at gold_alpha={alpha}; K={args.k}; seeds {args.seeds}; encoder=backbone", "",
             "| dataset | templates | pool acc (mean) | val acc (mean) | passes on val | passes on val+labelled | "
             "pool acc where it passes on val / fails |", "|---|---|---|---|---|---|---|"]
    for dataset in args.datasets:
        for count in (1, len(shipped)):
            cell = [r for r in rows if r["dataset"] == dataset and r["templates"] == count]
            passed = [r["pool acc"] for r in cell if r["val p"] < alpha]
            failed = [r["pool acc"] for r in cell if not r["val p"] < alpha]
            mean = lambda xs: f"{100 * statistics.mean(xs):.1f}" if xs else "-"  # noqa: E731
            lines.append(f"| {dataset} | {count} | {mean([r['pool acc'] for r in cell])} | "
                         f"{mean([r['val acc'] for r in cell])} | {len(passed)}/{len(cell)} | "
                         f"{sum(r['val+labelled p'] < alpha for r in cell)}/{len(cell)} | "
                         f"{mean(passed)} / {mean(failed)} |")
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
