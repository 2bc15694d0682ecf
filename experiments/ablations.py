"""Ablations: self-training with one part of the method changed at a time, on SST-2 and AG News with K=8.

    python experiments/ablations.py --jobs 12 --hardware gpu          # every variant, 2 datasets x 3 seeds
    python experiments/ablations.py --variants default labels=soft --datasets sst2 --seeds 0
    python experiments/ablations.py --smoke                             # tiny model, seconds (the test's path)

Each variant is a list of alpaca-train overrides added to the default config (VARIANTS below; edit it to add one).
Protocol as in benchmark.py: K labels per class and a validation set of K per class drawn with the seed, the pool
capped (--pool-size), the test set capped at 2000. Writes, under experiments/results/ablations/: runs/ (one run
folder per dataset, variant and seed, launched as one Hydra multirun through experiments/launch.py; finished runs
are reused when the command is repeated), results.json,
results.md (one row per dataset and variant) and ablations.png. Exits with status 1 if any run failed.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

if __package__ in (None, ""):  # run as `python experiments/ablations.py`: make the `experiments` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alpaca_lightning.assets import REPO_ROOT, register_resolvers
from experiments.benchmark import (
    CLASSIFIER_ALONE,
    MAX_LENGTH,
    failure_lines,
    fmt,
    header,
    mean_or_dash,
    metrics,
    per_round,
    read_rounds,
    table_row,
)
from experiments.launch import (
    REBUILT,
    Job,
    Launch,
    Outcome,
    add_common_flags,
    common_overrides,
    device_name,
    failure_report,
    launch_from_args,
)

# name -> alpaca-train overrides added to the default config. The config names may still change with the package.
VARIANTS: dict[str, list[str]] = {
    "default": [],  # the config in conf/ at the time of the run
    "filter=class_balanced": ["filters=[class_balanced]"],
    "filter=curriculum": ["filters=[curriculum]"],
    "labels=soft": ["selftrain.labels=soft"],
    "teachers=fused": ["teachers=[classifier,cloze,nsp]"],
    # the similarity teacher's settings (docs/method.md, "Teachers"): without it, and fused
    # in every round instead of where it lowers the validation NLL
    "teachers=[classifier]": CLASSIFIER_ALONE,
    "teacher_selection=all": ["teacher_selection=all"],
    "stages=[mlm_nsp]": ["stages=[mlm_nsp]"],
    # the self-training options, each removed from (or added to) the default on its own
    "stages=[]": ["stages=[]"],  # round 0 plain fine-tuning: no contrastive stage, no linear-probe head
    "stages=[probe]": ["stages=[probe]"],  # the linear-probe head without the contrastive stage
    "losses=[supervised,consistency]": ["losses=[supervised,consistency]"],
    "teachers=+propagation": ["teachers=[classifier,similarity,propagation]"],
    "fusion=weighted": ["fusion=weighted"],
    "calibration=none": ["calibration=none"],
    "min_precision=null": ["selftrain.min_precision=null"],  # no precision gate: every round runs
    "student_init=reset": ["student_init=reset"],
    # the classifier options (model.classifier), one conf/experiment/ablation/ file each
    **{name: [f"experiment=ablation/{name}"] for name in (
        "llrd", "gradual_unfreezing", "reinit_top", "lora", "scalar_mix", "attention_pooling", "max_pooling",
        "top_layers_concat", "top_layers_mix",
    )},
}
REFERENCE = "default"  # its round 0 (supervised only) is the dashed line of the plot


@dataclass
class Plan:
    """What to run: every (dataset, variant, seed) combination."""

    datasets: list[str] = field(default_factory=lambda: ["sst2", "agnews"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    k: int = 8  # labels per class, and validation examples per class
    pool_size: int = 2000
    test_size: int = 2000
    hardware: str | None = None
    extra: list[str] = field(default_factory=list)  # overrides for every run (the smoke settings, --override)


# The same code path in seconds, on the tiny model (its accuracy means nothing): for the test suite.
SMOKE = Plan(
    datasets=["trec6"],
    seeds=[0],
    variants=["filter=class_balanced", "filter=curriculum"],  # rank-based: the tiny model is never 90% confident
    pool_size=120,
    test_size=100,
    # min_precision=null: the rounds run whatever the untrained tiny model's precision
    extra=["model=tiny_bert", "selftrain.max_rounds=1", "selftrain.supervised_epochs=4",
           "selftrain.min_precision=null"],
)


def slug(variant: str) -> str:
    """A folder-name form of a variant name ('=' and ',' would confuse Hydra's override parser)."""
    return re.sub(r"[^A-Za-z0-9_.]+", "-", variant)


def job(dataset: str, variant: str, seed: int, plan: Plan, runs: Path) -> Job:
    overrides = [
        f"task={dataset}",
        f"seed={seed}",
        f"split.labels_per_class={plan.k}",
        f"split.val_per_class={plan.k}",
        "split.val_size=null",
        f"split.pool_size={plan.pool_size}",
        f"split.test_size={plan.test_size}",
        f"data.max_length={MAX_LENGTH[dataset]}",
        "logger=none",
        "trainer.enable_progress_bar=false",
        *common_overrides(plan.hardware, plan.extra),
        *VARIANTS[variant],  # last: the variant is what is being compared
    ]
    return Job(overrides, runs / f"{dataset}_{slug(variant)}_s{seed}")


def summarize(dataset: str, variant: str, outcomes: list[Outcome]) -> dict[str, Any]:
    """One table row: the finished seeds' metrics and per-round records; failed seeds listed with their error."""
    ok = [o for o in outcomes if o.ok]
    rounds = [read_rounds(o) for o in ok]
    return {
        "dataset": dataset,
        "variant": variant,
        "overrides": VARIANTS[variant],
        **metrics([o.results for o in ok]),
        "best_round": [o.results["best_round"] for o in ok],
        "wall_time_s": [o.results["wall_time_s"] for o in ok],
        "round0_test/acc": [r["test/acc"] for seed_rounds in rounds for r in seed_rounds if r["round"] == 0],
        "round0_val/acc": [r["val/acc"] for seed_rounds in rounds for r in seed_rounds if r["round"] == 0],
        "best_val/acc": [o.results["best"]["val/acc"] for o in ok],  # what a default may be chosen on
        "rounds": rounds,
        "failed": {o.job.name: o.error for o in outcomes if not o.ok},
    }


def ablations(out_root: Path, plan: Plan, launch: Launch | None = None) -> dict[str, Any]:
    """Runs every (dataset, variant, seed) of the plan in one sweep through ``launch``; writes the report."""
    launch = launch or Launch(label="ablations")
    start = time.time()
    runs = out_root / "runs"
    cells = [(d, v) for d in plan.datasets for v in plan.variants]
    groups = {(d, v): [job(d, v, s, plan, runs) for s in plan.seeds] for d, v in cells}
    # seed-major, so that a sweep cut short (a time limit) still leaves every cell its first seeds
    by_seed = [group[i] for i in range(len(plan.seeds)) for group in groups.values()]
    outcomes = launch.run(by_seed, "every dataset, variant and seed")
    done = {o.job.name: o for o in outcomes}
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(start)),
        "finished": time.strftime("%Y-%m-%d %H:%M"),
        "wall_time_s": round(time.time() - start, 1),
        "jobs": launch.jobs,
        "launcher": launch.launcher_name(),
        "hardware": plan.hardware,
        "device": device_name() if not launch.reuse_only else REBUILT,
        "plan": asdict(plan),
        "rows": [summarize(d, v, [done[j.name] for j in groups[d, v]]) for d, v in cells],
        "failures": failure_report(launch),
        "runs_reused_from_earlier_invocations": sorted(set(launch.reused)),
    }
    write_report(report, out_root)
    return report


# --- the report ----------------------------------------------------------------------------------------------------


COLUMNS = (
    "dataset",
    "variant",
    "round 0 val / test acc",
    "val acc (reported round)",
    "test acc",
    "test macro-F1",
    "reported rounds",
    "pseudo-label precision",
    "selected",
    "teacher val ECE",
    "s/run",
    "notes",
)


def write_report(report: dict[str, Any], out_root: Path) -> None:
    out_root.mkdir(parents=True, exist_ok=True)
    (out_root / "results.json").write_text(json.dumps(report, indent=2))
    plan = report["plan"]
    intro = (
        f"Ablations with K={plan['k']} labels per class: seeds {plan['seeds']}, pool capped at {plan['pool_size']}, "
        f"test capped at {plan['test_size']}. Test accuracy / macro-F1 in %, mean ± std over seeds; pseudo-label "
        f"precision (% of the selected pseudo-labels that are right) and selected count per round, mean over seeds "
        f"(round 0 is supervised only: '-'). {header(report)}"
    )
    if plan["extra"]:
        intro += " Every run also had: " + " ".join(f"`{o}`" for o in plan["extra"]) + "."
    lines = [intro, "", table_row(*COLUMNS), "|---" * len(COLUMNS) + "|"]
    lines += [row_line(row, len(plan["seeds"])) for row in report["rows"]]
    lines += against_reference(report["rows"])
    (out_root / "results.md").write_text("\n".join(lines + failure_lines(report)) + "\n")
    plot(report, out_root / "ablations.png")


def row_line(row: dict[str, Any], seeds: int) -> str:
    rounds = row["rounds"]
    notes = f"{len(row['failed'])}/{seeds} seeds failed" if row["failed"] else ""
    return table_row(
        row["dataset"],
        row["variant"],
        f"{fmt(row.get('round0_val/acc', []))} / {fmt(row['round0_test/acc'])}",
        fmt(row["best_val/acc"]),
        fmt(row["test/acc"]),
        fmt(row["test/f1_macro"]),
        row["best_round"],
        per_round(rounds, "pseudo/acc"),
        per_round(rounds, "pseudo/count"),
        per_round(rounds, "teacher/val_ece"),
        mean_or_dash(row["wall_time_s"]),
        notes,
    )


def against_reference(rows: list[dict[str, Any]]) -> list[str]:
    """Each variant's change against the reference variant on the same seeds, in points of mean accuracy: round 0
    and the reported round, validation (what a default is chosen on) and test, with the reported round's test
    macro-F1 beside them, per dataset and on average; and the
    reported round's validation change paired run by run (same dataset and seed), with its standard error, which
    says whether a validation change is more than the noise of a tiny validation set."""
    reference = {r["dataset"]: r for r in rows if r["variant"] == REFERENCE}
    keys = ("round0_val/acc", "round0_test/acc", "best_val/acc", "test/acc", "test/f1_macro")
    changes: dict[str, dict[str, list[float]]] = {}
    paired: dict[str, list[float]] = {}
    for row in rows:
        base = reference.get(row["dataset"])
        if row["variant"] == REFERENCE or base is None or not row["test/acc"] or not base["test/acc"]:
            continue
        deltas = [100 * (statistics.mean(row.get(k) or [math.nan]) - statistics.mean(base.get(k) or [math.nan]))
                  for k in keys]
        changes.setdefault(row["variant"], {})[row["dataset"]] = deltas
        if not row["failed"] and not base["failed"]:  # the same seeds, in the same order
            paired.setdefault(row["variant"], []).extend(
                100 * (a - b) for a, b in zip(row["best_val/acc"], base["best_val/acc"]))
    if not changes:
        return []
    datasets = list(reference)
    lines = ["", f"Change against `{REFERENCE}` in points of mean accuracy, round 0 val / test → reported round val / "
                 "test (validation is what a default is chosen on), then the reported round's test macro-F1; last "
                 "column: the reported round's validation change paired run by run, mean ± standard error (runs):",
             "",
             table_row("variant", *datasets, "mean", "paired val change"), "|---" * (len(datasets) + 3) + "|"]
    for variant, per_dataset in changes.items():
        cells = [delta_cell(per_dataset[d]) if d in per_dataset else "-" for d in datasets]
        mean = [statistics.mean(column) for column in zip(*per_dataset.values())]
        lines.append(table_row(variant, *cells, delta_cell(mean), paired_cell(paired.get(variant, []))))
    return lines


def paired_cell(differences: list[float]) -> str:
    if len(differences) < 2:
        return "-"
    error = statistics.stdev(differences) / math.sqrt(len(differences))
    return f"{statistics.mean(differences):+.1f} ± {error:.1f} ({len(differences)})"


def delta_cell(deltas: list[float]) -> str:
    r0_val, r0_test, val, test, f1 = ("-" if math.isnan(d) else f"{d:+.1f}" for d in deltas)
    return f"{r0_val} / {r0_test} → {val} / {test}, F1 {f1}"


def plot(report: dict[str, Any], path: Path) -> None:
    """Per dataset, test accuracy (mean ± std over seeds) of each variant; dashed: the reference's round 0."""
    datasets = report["plan"]["datasets"]
    variants = report["plan"]["variants"]
    fig, axes = plt.subplots(1, len(datasets), figsize=(1.1 * len(variants) + 2, 3.6), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        rows = {r["variant"]: r for r in report["rows"] if r["dataset"] == dataset}
        means = [100 * statistics.mean(rows[v]["test/acc"]) if rows[v]["test/acc"] else 0.0 for v in variants]
        stds = [100 * statistics.stdev(rows[v]["test/acc"]) if len(rows[v]["test/acc"]) > 1 else 0.0 for v in variants]
        bars = ax.bar(range(len(variants)), means, yerr=stds, capsize=3, color="tab:blue", alpha=0.8)
        labels = [f"{m:.1f}" if rows[v]["test/acc"] else "failed" for m, v in zip(means, variants)]
        ax.bar_label(bars, labels=labels, fontsize=7)
        reference = rows.get(REFERENCE, {}).get("round0_test/acc")
        if reference:
            label = "supervised only (round 0)"
            ax.axhline(100 * statistics.mean(reference), linestyle="--", color="gray", label=label)
            ax.legend(loc="lower right", fontsize=8)
        ax.set_xticks(range(len(variants)), variants, rotation=30, ha="right", fontsize=8)
        low = min([m - sd for m, sd in zip(means, stds) if m > 0] + [100 * min(reference or [1.0])])
        ax.set_ylim(max(0.0, low - 5), min(100.0, max(m + sd for m, sd in zip(means, stds)) + 4))  # zoom in
        ax.set_title(dataset)
        ax.set_ylabel("test accuracy (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def make_plan(args: argparse.Namespace) -> Plan:
    """The plan from the command line: the default (or --smoke) plan, narrowed and extended by the flags."""
    plan = SMOKE if args.smoke else Plan()
    changes = {"datasets": args.datasets, "seeds": args.seeds, "variants": args.variants, "pool_size": args.pool_size}
    return replace(
        plan,
        **{key: value for key, value in changes.items() if value},
        hardware=args.hardware,
        extra=plan.extra + args.override,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "experiments" / "results" / "ablations")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), help="run only these variants")
    parser.add_argument("--pool-size", type=int, default=None, help="cap on the unlabelled pool (default 2000)")
    parser.add_argument("--smoke", action="store_true", help="tiny model, trec6, one seed, two variants: seconds")
    add_common_flags(parser)
    args = parser.parse_args()
    register_resolvers()
    report = ablations(args.out, make_plan(args), launch_from_args(args, "ablations"))
    print((args.out / "results.md").read_text())
    print(f"report: {args.out}/results.md, plot: {args.out}/ablations.png")
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
