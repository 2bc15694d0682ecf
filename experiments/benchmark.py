"""Few-label benchmark on real datasets: supervised-only (tuned on validation) vs self-training vs full supervision.

    python experiments/benchmark.py --variant quick   # 1 seed, K=8, small pools: about 15-20 minutes on 2 CPU cores
    python experiments/benchmark.py --variant full    # 3 seeds, K=8 and 32: hours on 2 CPU cores; run it in the background

Reads the datasets from paths.data_dir (ALPACA_DATA_DIR, default ../shared/data). Writes, under
experiments/results/benchmark_<variant>/: runs/ (one alpaca-train run folder per configuration; finished runs are
reused when the command is repeated), results.json, results.md (the table) and test_acc_per_round.png.

Protocol: K labels per class and a validation set of K per class, both drawn from the pool with the seed; the rest
of the pool (capped) is unlabelled, its gold labels used only for diagnostics. The supervised baseline's learning
rate and epochs are chosen on mean validation accuracy over seeds, never on test; the self-training row uses the
chosen recipe for its round 0 and the default pseudo-label rounds after it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from alpaca_lightning.assets import REPO_ROOT, register_resolvers  # noqa: E402
from alpaca_lightning.pipeline import run  # noqa: E402

MAX_LENGTH = {"sst2": 64, "trec6": 64, "agnews": 128}


@dataclass
class Variant:
    datasets: list[str]
    ks: list[int]
    seeds: list[int]
    pool_size: int
    test_size: int | None
    full_supervision_size: int
    grid: list[dict[str, Any]]  # supervised recipes tried, chosen on validation
    selftrain: list[str] = field(default_factory=list)  # overrides of the self-training rounds
    extra: list[str] = field(default_factory=list)  # overrides for every run (--override)


VARIANTS = {
    "quick": Variant(
        datasets=["sst2", "agnews", "trec6"], ks=[8], seeds=[0], pool_size=500, test_size=1000,
        full_supervision_size=1000,
        grid=[{"lr": 1e-4, "epochs": 20}, {"lr": 2e-4, "epochs": 20}],
        selftrain=["selftrain.max_rounds=2", "filters.class_balanced.k=100"],
    ),
    # The same code path in seconds, for the test suite (with --override model=tiny_bert).
    "smoke": Variant(
        datasets=["trec6"], ks=[8], seeds=[0], pool_size=120, test_size=100, full_supervision_size=200,
        grid=[{"lr": 3e-3, "epochs": 4}], selftrain=["selftrain.max_rounds=1", "filters.class_balanced.k=10"],
    ),
    "full": Variant(
        datasets=["sst2", "agnews", "trec6"], ks=[8, 32], seeds=[0, 1, 2], pool_size=2000, test_size=2000,
        full_supervision_size=5000,
        grid=[{"lr": lr, "epochs": ep} for lr in (5e-5, 1e-4, 2e-4) for ep in (10, 30)],
    ),
}


def overrides_for(dataset: str, k: int | None, seed: int, variant: Variant, out: Path) -> list[str]:
    per_class = "null" if k is None else str(k)
    return variant.extra + [
        f"task={dataset}",
        f"seed={seed}",
        f"split.labels_per_class={per_class}",
        f"split.val_per_class={8 if k is None else k}",
        "split.val_size=null",
        f"split.pool_size={variant.full_supervision_size if k is None else variant.pool_size}",
        f"split.test_size={'null' if variant.test_size is None else variant.test_size}",
        f"data.max_length={MAX_LENGTH[dataset]}",
        "logger=none",
        "trainer.enable_progress_bar=false",
        f"paths.output_dir={out}",
    ]


REUSED: list[str] = []


def run_once(overrides: list[str], out: Path) -> dict[str, Any]:
    """One alpaca-train run in this process; a finished run folder is reused (and counted in the report)."""
    if (out / "results.json").is_file():
        REUSED.append(out.name)
        return json.loads((out / "results.json").read_text())
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    print(f"[benchmark] {out.name}", flush=True)
    results = run(cfg)
    for model_dir in out.glob("rounds/round_*/model"):  # ~90 MB each; the benchmark only needs the metrics
        shutil.rmtree(model_dir)
    return results


def recipe_overrides(recipe: dict[str, Any]) -> list[str]:
    return [f"model.classifier.optimizer.lr={recipe['lr']}", f"selftrain.supervised_epochs={recipe['epochs']}"]


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def fmt(values: list[float]) -> str:
    mean, std = mean_std(values)
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def benchmark(
    variant_name: str, out_root: Path, extra: list[str] = (), **narrow: list[Any] | None
) -> dict[str, Any]:
    """``narrow`` may replace the variant's ``datasets``, ``ks`` or ``seeds``."""
    variant = VARIANTS[variant_name]
    changes = {key: value for key, value in narrow.items() if value}
    variant = Variant(**{**variant.__dict__, **changes, "extra": list(extra)})
    runs = out_root / "runs"
    report: dict[str, Any] = {"variant": variant_name, "started": time.strftime("%Y-%m-%d %H:%M"), "cells": []}
    for dataset in variant.datasets:
        for k in variant.ks:
            cell: dict[str, Any] = {"dataset": dataset, "K": k}
            # 1. supervised only: each recipe on every seed; choose on mean validation accuracy
            tried = []
            for i, recipe in enumerate(variant.grid):
                results = [
                    run_once(
                        overrides_for(dataset, k, s, variant, runs / f"{dataset}_K{k}_sup{i}_s{s}")
                        + recipe_overrides(recipe) + ["selftrain.max_rounds=0"],
                        runs / f"{dataset}_K{k}_sup{i}_s{s}",
                    )
                    for s in variant.seeds
                ]
                tried.append((statistics.mean(r["best"]["val/acc"] for r in results), recipe, results))
            val, recipe, sup = max(tried, key=lambda t: t[0])
            cell["recipe"] = recipe
            cell["grid"] = [{"recipe": r, "val/acc": v} for v, r, _ in tried]
            cell["supervised"] = {"test/acc": [r["best"]["test/acc"] for r in sup],
                                  "test/f1_macro": [r["best"]["test/f1_macro"] for r in sup]}
            # 2. self-training with the chosen round-0 recipe
            st_runs, rounds = [], []
            for s in variant.seeds:
                folder = runs / f"{dataset}_K{k}_selftrain_s{s}"
                st_runs.append(run_once(
                    overrides_for(dataset, k, s, variant, folder) + recipe_overrides(recipe) + variant.selftrain, folder
                ))
                rounds.append(json.loads((folder / "rounds.json").read_text()))
            cell["selftrain"] = {
                "test/acc": [r["best"]["test/acc"] for r in st_runs],
                "test/f1_macro": [r["best"]["test/f1_macro"] for r in st_runs],
                "best_round": [r["best_round"] for r in st_runs],
                "wall_time_s": [r["wall_time_s"] for r in st_runs],
                "rounds": rounds,
            }
            # 3. full supervision on the (capped) pool's gold labels
            full = [
                run_once(
                    overrides_for(dataset, None, s, variant, runs / f"{dataset}_full_s{s}")
                    + recipe_overrides({"lr": recipe["lr"], "epochs": 2}) + ["selftrain.max_rounds=0"],
                    runs / f"{dataset}_full_s{s}",
                )
                for s in variant.seeds[:1]
            ]
            cell["full"] = {"test/acc": [r["best"]["test/acc"] for r in full],
                            "test/f1_macro": [r["best"]["test/f1_macro"] for r in full],
                            "labelled": full[0]["splits"]["labelled"]}
            report["cells"].append(cell)
            write_report(report, variant, out_root)
    report["finished"] = time.strftime("%Y-%m-%d %H:%M")
    report["runs_reused_from_earlier_invocations"] = sorted(set(REUSED))
    write_report(report, variant, out_root)
    return report


def per_round(rounds: list[list[dict[str, Any]]], key: str) -> str:
    """Mean over seeds of a per-round value, rounds joined by ' / '."""
    depth = max(len(r) for r in rounds)
    out = []
    for i in range(depth):
        values = [r[i][key] for r in rounds if i < len(r) and key in r[i]]
        if values:
            mean = statistics.mean(values)
            out.append(f"{100 * mean:.0f}" if key.endswith("acc") else f"{mean:.0f}")
        else:
            out.append("-")
    return " / ".join(out)


def write_report(report: dict[str, Any], variant: Variant, out_root: Path) -> None:
    out_root.mkdir(parents=True, exist_ok=True)
    (out_root / "results.json").write_text(json.dumps(report, indent=2))
    lines = [
        f"Variant `{report['variant']}`: seeds {variant.seeds}, pool capped at {variant.pool_size}, "
        f"test capped at {variant.test_size}. Test accuracy / macro-F1 in %, mean ± std over seeds.",
        "",
        "| dataset | K | row | test acc | test macro-F1 | notes |",
        "|---|---|---|---|---|---|",
    ]
    for cell in report["cells"]:
        d, k = cell["dataset"], cell["K"]
        sup, st, full = cell["supervised"], cell["selftrain"], cell["full"]
        lines.append(f"| {d} | {k} | supervised only | {fmt(sup['test/acc'])} | {fmt(sup['test/f1_macro'])} | "
                     f"lr {cell['recipe']['lr']}, {cell['recipe']['epochs']} epochs (chosen on validation) |")
        lines.append(
            f"| {d} | {k} | self-training | {fmt(st['test/acc'])} | {fmt(st['test/f1_macro'])} | "
            f"best rounds {st['best_round']}; pseudo-label acc per round {per_round(st['rounds'], 'pseudo/acc')}; "
            f"selected {per_round(st['rounds'], 'pseudo/count')}; {statistics.mean(st['wall_time_s']):.0f} s/run |"
        )
        lines.append(f"| {d} | - | full supervision | {fmt(full['test/acc'])} | {fmt(full['test/f1_macro'])} | "
                     f"{full['labelled']} gold labels (capped pool), 2 epochs, one seed |")
    (out_root / "results.md").write_text("\n".join(lines) + "\n")
    plot(report, out_root / "test_acc_per_round.png")


def plot(report: dict[str, Any], path: Path) -> None:
    cells = report["cells"]
    fig, axes = plt.subplots(1, len(cells), figsize=(4 * len(cells), 3.2), squeeze=False)
    for ax, cell in zip(axes[0], cells):
        for seed_rounds in cell["selftrain"]["rounds"]:
            ax.plot([r["round"] for r in seed_rounds], [100 * r["test/acc"] for r in seed_rounds], marker="o", alpha=0.7)
        ax.axhline(100 * statistics.mean(cell["full"]["test/acc"]), linestyle="--", color="gray", label="full sup.")
        ax.set_title(f"{cell['dataset']}, K={cell['K']}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("round (0 = supervised only)")
        ax.set_ylabel("test accuracy (%)")
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="quick")
    parser.add_argument("--out", type=Path, default=None, help="default: experiments/results/benchmark_<variant>")
    parser.add_argument("--override", action="append", default=[], help="an alpaca-train override for every run")
    parser.add_argument("--datasets", nargs="+", help="replace the variant's datasets")
    parser.add_argument("--ks", nargs="+", type=int, help="replace the variant's labels per class")
    parser.add_argument("--seeds", nargs="+", type=int, help="replace the variant's seeds")
    args = parser.parse_args()
    register_resolvers()
    out = args.out or REPO_ROOT / "experiments" / "results" / f"benchmark_{args.variant}"
    report = benchmark(args.variant, out, args.override, datasets=args.datasets, ks=args.ks, seeds=args.seeds)
    print((out / "results.md").read_text())
    print(f"report: {out}/results.md, plot: {out}/test_acc_per_round.png, started {report['started']}")


if __name__ == "__main__":
    sys.exit(main())
