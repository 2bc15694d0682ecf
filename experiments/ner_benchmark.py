"""Few-shot named entities on CoNLL-2003: supervised only (its learning rate chosen on validation F1) vs
self-training vs full supervision, K mentions per entity type (greedy K-shot sampling).

    python experiments/ner_benchmark.py --variant quick   # K=5, 1 seed, pool 500, test 1,000: minutes on 2 CPU cores
    python experiments/ner_benchmark.py --variant cpu     # K=5 and 20, 5 seeds, pool 2,000, the whole test set
    python experiments/ner_benchmark.py --variant cpu --hardware gpu --jobs 8   # the same on one big GPU, plus
                                                          # full supervision on the whole training set (--full-train)

Reads ../shared/data/conll2003 through paths.data_dir (ALPACA_DATA_DIR). Writes, under
experiments/results/ner_<variant>/: runs/ (one alpaca-train run folder per configuration; finished runs are reused
when the command is repeated), results.json and results.md (mean ± std over seeds of entity-level micro F1, strict
IOB2, on test, at each run's reported round).

Every run is `alpaca-train experiment=ner ...`, launched as Hydra multiruns by experiments/launch.py (--jobs,
--launcher slurm), as the sentence benchmark does. Phases: 1. the supervised grid (learning rates x seeds, round 0
only); 2. with each K's chosen rate, self-training on every seed for each candidate (the candidate with the best mean
validation F1 is the self-training row), and full supervision on the pool's gold tags (one seed).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python experiments/ner_benchmark.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alpaca_lightning.aggregate import mean_std
from alpaca_lightning.artifacts import atomic_write_json, atomic_write_text
from alpaca_lightning.assets import REPO_ROOT
from experiments.launch import Job, Launch, Outcome, add_common_flags, common_overrides, device_name, launch_from_args


PER_TAG_HALF = ["filters=[class_balanced]", "filters.class_balanced.k=null", "filters.class_balanced.percentile=50"]


@dataclass
class NerVariant:
    ks: list[int]
    seeds: list[int]
    pool_size: int
    test_size: int | None
    grid: list[tuple[float, int]]  # supervised recipes: (learning rate, epochs), chosen on validation F1
    full_epochs: int = 5
    extra: list[str] = field(default_factory=list)
    # self-training candidates (overrides on top of experiment=ner), chosen on mean validation F1
    candidates: dict[str, list[str]] = field(default_factory=lambda: {
        "default": [],
        # the top half of each predicted tag instead of a confidence threshold, which keeps O words only when no
        # entity word reaches it (and the students then learn to miss entities)
        "class_balanced percentile=50": PER_TAG_HALF,
        "teachers=[classifier,lexicon]": ["teachers=[classifier,lexicon]"],
    })


# A few sentences give a few optimizer steps per epoch: the grid reaches far more steps than sentence tasks need.
# (lr 5e-4 lost to 1e-4 at 20 and at 80 epochs on validation in the quick variant; the cpu grid keeps 1e-4 and 2e-4.)
GRID = [(lr, epochs) for lr in (1e-4, 5e-4) for epochs in (20, 80)]
VARIANTS = {
    # the benchmark of record on 2 CPU cores: the default self-training row only
    "cpu": NerVariant(ks=[5, 20], seeds=[0, 1, 2, 3, 4], pool_size=2000, test_size=None,
                      grid=[(1e-4, 40), (1e-4, 80), (2e-4, 80)], candidates={"default": []}),
    "quick": NerVariant(ks=[5], seeds=[0], pool_size=500, test_size=1000, grid=GRID),
    # the same code path in seconds, for the test suite (tiny model, fixture data; see tests/test_ner_benchmark.py)
    "smoke": NerVariant(ks=[2], seeds=[0], pool_size=40, test_size=20, grid=[(3e-3, 4)], full_epochs=2,
                        extra=["model=tiny_bert", "selftrain.max_rounds=1", "selftrain.min_precision=null"],
                        # the untrained tiny model is never 90% confident: a low threshold keeps some words
                        candidates={"default": ["filters.confidence.threshold=0.3"],
                                    "class_balanced percentile=50": PER_TAG_HALF,
                                    "teachers=[classifier,lexicon]": ["teachers=[classifier,lexicon]",
                                                                      "filters.confidence.threshold=0.3"]}),
}
PLAIN = ["stages=[]", "selftrain.max_rounds=0"]
MAX_LENGTH = 128  # subwords per piece: longer sentences are split at word boundaries (logged), never cut


def base_overrides(k: int | None, seed: int, variant: NerVariant, extra: list[str]) -> list[str]:
    per_type = "null" if k is None else str(k)
    return [
        "experiment=ner", f"seed={seed}", f"split.labels_per_class={per_type}",
        f"split.val_per_class={5 if k is None else k}", "split.val_size=null", f"split.pool_size={variant.pool_size}",
        f"split.test_size={'null' if variant.test_size is None else variant.test_size}",
        f"data.max_length={MAX_LENGTH}", "logger=none", "trainer.enable_progress_bar=false",
        *variant.extra, *extra,
    ]


def recipe(lr: float, epochs: int) -> list[str]:
    return [f"model.classifier.optimizer.lr={lr}", f"selftrain.supervised_epochs={epochs}"]


Recipe = tuple[float, int]


def supervised_jobs(variant: NerVariant, runs: Path, extra: list[str]) -> dict[tuple[int, Recipe], list[Job]]:
    return {(k, (lr, epochs)): [Job(base_overrides(k, s, variant, extra) + recipe(lr, epochs) + PLAIN,
                                    runs / f"conll2003_K{k}_sup_lr{lr:g}_ep{epochs}_s{s}") for s in variant.seeds]
            for k in variant.ks for lr, epochs in variant.grid}


def selftrain_job(k: int, chosen: Recipe, seed: int, candidate: str, variant: NerVariant, runs: Path,
                  extra: list[str]) -> Job:
    suffix = "" if candidate == "default" else "-" + "".join(c if c.isalnum() else "-" for c in candidate)
    overrides = base_overrides(k, seed, variant, extra) + recipe(*chosen)
    return Job(overrides + variant.candidates[candidate], runs / f"conll2003_K{k}_selftrain{suffix}_s{seed}")


def full_job(chosen: Recipe, variant: NerVariant, runs: Path, extra: list[str], whole_train: bool) -> Job:
    overrides = base_overrides(None, variant.seeds[0], variant, extra) + recipe(chosen[0], variant.full_epochs) + PLAIN
    if whole_train:
        return Job(overrides + ["split.pool_size=null"], runs / "conll2003_full_train")
    return Job(overrides, runs / "conll2003_full_pool")


def best(outcomes: list[Outcome], key: str) -> list[float]:
    return [o.results["best"][key] for o in outcomes if o.ok]


def mean_or_none(values: list[float]) -> float | None:
    return statistics.mean(values) if values else None


def run_benchmark(variant_name: str, out_root: Path, launch: Launch, extra: list[str], seeds: list[int] | None,
                  whole_train: bool) -> dict[str, Any]:
    variant = VARIANTS[variant_name]
    if seeds:
        variant.seeds = seeds
    runs = out_root / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    start = time.time()
    grid = supervised_jobs(variant, runs, extra)
    done = {o.job.name: o for o in launch.run([j for js in grid.values() for j in js], "phase 1, supervised grid")}
    report: dict[str, Any] = {"variant": variant_name, "device": device_name(), "cells": []}
    chosen: dict[int, Recipe] = {}
    for k in variant.ks:
        scores = {r: mean_or_none(best([done[j.name] for j in grid[k, r]], "val/f1")) for r in variant.grid}
        eligible = {r: s for r, s in scores.items() if s is not None}
        chosen[k] = max(eligible, key=eligible.get) if eligible else variant.grid[0]  # ties: the first
        report["cells"].append({"K": k, "recipe_scores": {f"lr {r[0]:g}, {r[1]} epochs": s for r, s in scores.items()},
                                "recipe": list(chosen[k]),
                                "supervised": best([done[j.name] for j in grid[k, chosen[k]]], "test/f1")})
    jobs = {(k, c): [selftrain_job(k, chosen[k], s, c, variant, runs, extra) for s in variant.seeds]
            for k in variant.ks for c in variant.candidates}
    fulls = [full_job(chosen[variant.ks[0]], variant, runs, extra, False)]
    if whole_train:
        fulls.append(full_job(chosen[variant.ks[0]], variant, runs, extra, True))
    done = {o.job.name: o for o in launch.run([j for js in jobs.values() for j in js] + fulls,
                                              "phase 2, self-training and full supervision")}
    for cell in report["cells"]:
        candidates = {c: [done[j.name] for j in jobs[cell["K"], c]] for c in variant.candidates}
        cell["candidates"] = {
            c: {"val/f1": mean_or_none(best(o, "val/f1")), "test/f1": best(o, "test/f1"),
                "round0/test/f1": [o_.results["supervised_only"]["test/f1"] for o_ in o if o_.ok],
                "best_round": [o_.results["best_round"] for o_ in o if o_.ok],
                "seconds": [o_.results["wall_time_s"] for o_ in o if o_.ok]}
            for c, o in candidates.items()}
        scored = {c: v["val/f1"] for c, v in cell["candidates"].items() if v["val/f1"] is not None}
        cell["selftrain_candidate"] = max(scored, key=scored.get) if scored else None
    report["full"] = {o.job.name: (o.results["best"]["test/f1"], o.results["splits"]["labelled"])
                      for o in (done[j.name] for j in fulls) if o.ok}
    report["failures"] = [{"run": o.job.name, "error": o.error or ""} for o in launch.failures]
    report["wall_time_s"] = round(time.time() - start, 1)
    atomic_write_json(out_root / "results.json", report)
    atomic_write_text(out_root / "results.md", markdown(report, variant))
    return report


def fmt(values: list[float]) -> str:
    if not values:
        return "failed"
    mean, std = mean_std(values)
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def markdown(report: dict[str, Any], variant: NerVariant) -> str:
    test = "the whole test set" if variant.test_size is None else f"{variant.test_size} test sentences"
    lines = [f"CoNLL-2003, variant `{report['variant']}`: seeds {variant.seeds}, pool of {variant.pool_size} "
             f"sentences, {test}. Entity-level micro F1 (strict IOB2) in %, mean ± std over seeds, at each run's "
             f"reported round. Ran on {report['device']}.", "",
             "| K per type | row | test F1 | notes |", "|---|---|---|---|"]
    for cell in report["cells"]:
        notes = "; ".join(f"{r}: {100 * s:.1f}" if s is not None else f"{r}: failed"
                          for r, s in cell["recipe_scores"].items())
        lr, epochs = cell["recipe"]
        lines.append(f"| {cell['K']} | supervised only | {fmt(cell['supervised'])} | lr {lr:g}, {epochs} epochs "
                     f"chosen on validation F1 ({notes}) |")
        for name, c in cell["candidates"].items():
            mark = " (the row: best validation F1)" if name == cell["selftrain_candidate"] else ""
            val = "-" if c["val/f1"] is None else f"{100 * c['val/f1']:.1f}"
            lines.append(f"| {cell['K']} | self-training `{name}`{mark} | {fmt(c['test/f1'])} | round 0 "
                         f"{fmt(c['round0/test/f1'])}; val F1 {val}; reported rounds {c['best_round']}; "
                         f"{mean_or_none(c['seconds']) or 0:.0f} s/run |")
    for name, (f1, labelled) in report["full"].items():
        lines.append(f"| - | full supervision ({labelled} sentences) | {100 * f1:.1f} | `{name}`, one seed |")
    if report["failures"]:
        lines += ["", "Failed runs: " + ", ".join(f["run"] for f in report["failures"])]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="quick")
    parser.add_argument("--out", type=Path, default=None, help="default experiments/results/ner_<variant>")
    parser.add_argument("--full-train", action="store_true",
                        help="also full supervision on the whole training set (meant for a GPU)")
    add_common_flags(parser)
    args = parser.parse_args()
    out = args.out or REPO_ROOT / "experiments" / "results" / f"ner_{args.variant}"
    launch = launch_from_args(args, "ner")
    report = run_benchmark(args.variant, out, launch, common_overrides(args.hardware, args.override), args.seeds,
                           args.full_train)
    print((out / "results.md").read_text())
    sys.exit(1 if report["failures"] else 0)


if __name__ == "__main__":
    main()
