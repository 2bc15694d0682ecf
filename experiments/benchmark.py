"""Few-label benchmark on real datasets: supervised-only (tuned on validation) vs self-training vs full supervision.

    python experiments/benchmark.py --variant quick   # 1 seed, K=8, small pools: about 35-40 minutes on 2 CPU cores
    python experiments/benchmark.py --variant cpu     # 5 seeds, K=8, pools of 1,000, with the peers (SetFit, a
                                                      # frozen-encoder logistic regression): about 80 min on 2 cores
    python experiments/benchmark.py --variant devset --prompt names   # the cpu protocol on 5 development tasks,
                                                      # label names as the only prompt, the round-loop guards as
                                                      # candidates: several hours on 2 cores
    python experiments/benchmark.py --variant full    # 3 seeds, K=8 and 32: hours on 2 CPU cores, or
    python experiments/benchmark.py --variant full --jobs 12 --hardware gpu   # 12 runs at a time on one big GPU
    python experiments/benchmark.py --variant full --launcher slurm --hardware gpu \
        --sweep-override hydra.launcher.partition=gpu                          # one SLURM job per run
    python experiments/benchmark.py --variant cpu --prompt names --datasets r8 newsgroups20   # label names only

Reads the datasets from paths.data_dir (ALPACA_DATA_DIR, default ../shared/data). Writes, under
experiments/results/benchmark_<variant>/: runs/ (one alpaca-train run folder per configuration; finished runs are
reused when the command is repeated), results.json, results.md (the table) and test_acc_per_round.png.

--prompt names runs every task with its label names as the only prompt (task.prompt=null: the similarity teacher
reads the label names, as on a user's own task) and writes under experiments/results/benchmark_<variant>_names/.

Protocol: K labels per class and a validation set of K per class, both drawn from the pool with the seed; the rest
of the pool (capped) is unlabelled, its gold labels used only for diagnostics. The supervised baseline's learning
rate and epochs are chosen on mean validation accuracy over seeds, never on test; the self-training row uses the
chosen recipe for its round 0 and the default pseudo-label rounds after it.

Every run is an alpaca-train run, launched in Hydra multiruns (experiments/launch.py: the job-list sweeper with a
conf/launcher/ config; --jobs N runs at a time through joblib, or --launcher slurm). Phases, each one sweep:
1. every supervised recipe on every dataset, K and seed; 2. (with each cell's chosen recipe) self-training on every
seed, and full supervision on one seed, with the learning rate chosen for the dataset's first K; 3. the peers
(experiments/peers.py, a Hydra app over the same conf/) where the variant has them. The command exits with
status 1 if any run failed.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

if __package__ in (None, ""):  # run as `python experiments/benchmark.py`: make the `experiments` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alpaca_lightning import aggregate
from alpaca_lightning.aggregate import choose_recipes, find_runs, mean_std
from alpaca_lightning.assets import REPO_ROOT, register_resolvers
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
from experiments.peers import PEERS

# Token cap per task. The news tasks' texts are long (r8: median 66 words, newsgroups20: 162): 128 keeps CPU cost
# down at the price of reading the start of a long post only.
MAX_LENGTH = {"sst2": 64, "trec6": 64, "agnews": 128, "mr": 64, "r8": 128, "newsgroups20": 128}

# --prompt: the task configs' own prompts, or the label names alone (what a user's task without prompts gives the
# similarity teacher; the cloze and NSP teachers, which need a prompt, are not in the default config)
PROMPT_OVERRIDES = {"task": [], "names": ["task.prompt=null"]}
PROMPT_TITLES = {"task": "the task configs' prompts", "names": "label names only (task.prompt=null)"}


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
    # Self-training settings tried, each on every cell and seed; the one with the best mean validation accuracy
    # over all cells is reported (chosen like the supervised recipe: on validation, never on test).
    candidates: dict[str, list[str]] = field(default_factory=lambda: {"default": []})
    extra: list[str] = field(default_factory=list)  # overrides for every run (--hardware, --override)
    peers: bool = False  # add the rows of experiments/peers.py (needs the `peers` extra)


# The quick variant's stage candidates were measured before stages.probe.finetune_lr existed: they fine-tuned round 0
# and the students at the recipe's rate, which these overrides keep.
PROBE_AT_RECIPE_RATE = ["stages=[contrastive,probe]", "stages.probe.finetune_lr=null"]
# The default before the similarity teacher: the round's classifier alone, as it predicts.
CLASSIFIER_ALONE = ["teachers=[classifier]", "fusion=mean", "calibration=none"]

VARIANTS = {
    "quick": Variant(
        datasets=["sst2", "agnews", "trec6"],
        ks=[8],
        seeds=[0],
        pool_size=500,
        test_size=1000,
        full_supervision_size=1000,
        grid=[{"lr": 1e-4, "epochs": 20}, {"lr": 2e-4, "epochs": 20}],
        selftrain=["selftrain.max_rounds=2", "selftrain.min_precision=null"],
        # the self-training options, each on every cell (the self-training row reports the best on validation);
        # explicit, so that a run folder keeps its meaning when the defaults change
        candidates={
            "stages=[]": ["stages=[]"],
            "stages=[contrastive,probe]": PROBE_AT_RECIPE_RATE,
            "losses=[supervised,consistency]": ["stages=[]", "losses=[supervised,consistency]"],
            "contrastive+probe+consistency": [*PROBE_AT_RECIPE_RATE, "losses=[supervised,consistency]"],
            "losses.supervised.cutoff=0.1": ["stages=[]", "losses.supervised.cutoff=0.1"],
            "student_init=stages": [*PROBE_AT_RECIPE_RATE, "student_init=stages"],
            "calibration=temperature": [*PROBE_AT_RECIPE_RATE, "calibration=temperature"],
            "propagation+agreement": [
                *PROBE_AT_RECIPE_RATE, "teachers=[classifier,propagation]", "fusion=agreement",
            ],
        },
    ),
    # The benchmark of record on 2 CPU cores (about 80 minutes): the default self-training row against tuned
    # supervised fine-tuning and the peers, 5 seeds. The self-training row is the config in conf/, nothing tried
    # on test.
    "cpu": Variant(
        datasets=["sst2", "agnews", "trec6"],
        ks=[8],
        seeds=[0, 1, 2, 3, 4],
        pool_size=1000,
        test_size=1000,
        full_supervision_size=1000,
        grid=[{"lr": 1e-4, "epochs": 20}, {"lr": 2e-4, "epochs": 20}],
        peers=True,
        # the shipped config (round 0 and the students at the probe's 2e-5) and the alternatives it was chosen
        # against on validation: calibration (quick ablation), round 0 and the students at the recipe's rate (the
        # earlier default), and round 0 at 2e-5 with the students at the recipe's rate
        candidates={
            "default": [],
            # the default before the 5-round schedule with the precision gate
            "max_rounds=3,min_precision=null": ["selftrain.max_rounds=3", "selftrain.min_precision=null"],
            # the default before the similarity teacher (the classifier alone, uncalibrated)
            "teachers=[classifier]": CLASSIFIER_ALONE,
            # round 0 without the contrastive stage (the linear-probe head alone): ahead on validation in the GPU
            # ablation once the similarity teacher joined (experiments/results/ablations_gpu)
            "stages=[probe]": ["stages=[probe]"],
            "calibration=temperature": ["calibration=temperature"],
            "finetune_lr=null": ["stages.probe.finetune_lr=null"],
            "supervised_lr=2e-5": ["stages.probe.finetune_lr=null", "selftrain.supervised_lr=2e-5"],
        },
    ),
    # The same code path in seconds, for the test suite (with --override model=tiny_bert).
    "smoke": Variant(
        datasets=["trec6"],
        ks=[8],
        seeds=[0],
        pool_size=120,
        test_size=100,
        full_supervision_size=200,
        grid=[{"lr": 3e-3, "epochs": 4}],
        # the untrained tiny model is never 90% confident: select by rank instead of a threshold
        selftrain=["selftrain.max_rounds=1", "filters=[class_balanced]", "filters.class_balanced.k=10",
                   "selftrain.min_precision=null"],
        peers=True,
    ),
    "full": Variant(
        datasets=["sst2", "agnews", "trec6"],
        ks=[8, 32],
        seeds=[0, 1, 2],
        pool_size=2000,
        test_size=2000,
        full_supervision_size=5000,
        grid=[{"lr": lr, "epochs": ep} for lr in (5e-5, 1e-4, 2e-4) for ep in (10, 30)],
        candidates={
            "student_init=reset": ["student_init=reset"],
            "student_init=continue": ["student_init=continue"],
            "student_epochs=3": ["student_init=reset", "selftrain.student_epochs=3"],
        },
    ),
}
# The development set of the label-names-only protocol (run it with --prompt names): the benchmark of record's
# protocol on its tasks and two imbalanced ones with more labels. The candidates are the round-loop levers that guard
# against a weak zero-shot teacher and a collapsing round; MR stays out (benchmark_cpu_mr confirms a default).
VARIANTS["devset"] = replace(
    VARIANTS["cpu"],
    datasets=["sst2", "agnews", "trec6", "r8", "newsgroups20"],
    candidates={
        "default": [],
        "teacher_selection=checked": ["teacher_selection=checked"],
        "checked+guarded": ["teacher_selection=checked", "schedule=guarded"],
        "checked+guarded+max_prior_distance=0.3": [
            "teacher_selection=checked", "schedule=guarded", "selftrain.max_prior_distance=0.3",
        ],
        "teachers=[classifier]": CLASSIFIER_ALONE,
    },
)

FULL_EPOCHS = 2


def overrides_for(dataset: str, k: int | None, seed: int, variant: Variant) -> list[str]:
    """The split and data settings of one run; ``k=None`` is full supervision on the capped pool."""
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
    ]


def recipe_overrides(recipe: dict[str, Any]) -> list[str]:
    return [f"model.classifier.optimizer.lr={recipe['lr']}", f"selftrain.supervised_epochs={recipe['epochs']}"]


def fmt(values: list[float]) -> str:
    if not values:
        return "failed"
    mean, std = mean_std(values)
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


# --- the two phases ------------------------------------------------------------------------------------------------


# The supervised-only and full-supervision rows are plain fine-tuning, whatever round-0 stages the config's
# defaults add: those stages belong to the self-training row, where round 0 shows their share of the gain.
PLAIN = ["stages=[]", "selftrain.max_rounds=0"]


def supervised_job(dataset: str, k: int, i: int, seed: int, variant: Variant, runs: Path) -> Job:
    overrides = overrides_for(dataset, k, seed, variant) + recipe_overrides(variant.grid[i]) + PLAIN
    return Job(overrides, runs / f"{dataset}_K{k}_sup{i}_s{seed}")


def selftrain_job(
    dataset: str, k: int, seed: int, recipe: dict[str, Any], variant: Variant, runs: Path, candidate: str = "default"
) -> Job:
    overrides = (
        overrides_for(dataset, k, seed, variant) + recipe_overrides(recipe) + variant.selftrain
        + variant.candidates[candidate]
    )
    suffix = "" if candidate == "default" else "-" + re.sub(r"[^A-Za-z0-9_.]+", "-", candidate)
    return Job(overrides, runs / f"{dataset}_K{k}_selftrain{suffix}_s{seed}")


def choose_candidate(report: dict[str, Any], outcomes: dict[str, list[Outcome]]) -> str | None:
    """The self-training candidate with the best mean validation accuracy (of its reported round) over every cell and
    seed; candidates with a failed run drop out."""
    scores = []
    for name, runs in outcomes.items():
        if runs and all(o.ok for o in runs):
            val = [o.results["best"]["val/acc"] for o in runs]
            test = [o.results["best"]["test/acc"] for o in runs]
            f1 = [o.results["best"]["test/f1_macro"] for o in runs]
            scores.append({"candidate": name, "val/acc": statistics.mean(val), "test/acc": statistics.mean(test),
                           "test/f1_macro": statistics.mean(f1), "per_dataset": candidate_details(runs)})
    report["candidates"] = scores
    report["candidates_incomplete"] = [
        name for name, runs in outcomes.items() if not runs or not all(o.ok for o in runs)
    ]
    return max(scores, key=lambda c: c["val/acc"])["candidate"] if scores else None


# per-round values of a candidate's runs, averaged over seeds per dataset (the ablation table of the report)
DETAILS = {
    "round 0 test": lambda rounds: rounds[0].get("test/acc"),
    "last round test": lambda rounds: rounds[-1].get("test/acc"),
    "round 1 pseudo-label acc": lambda rounds: rounds[1].get("pseudo/acc") if len(rounds) > 1 else None,
    "round 1 selected": lambda rounds: rounds[1].get("pseudo/count") if len(rounds) > 1 else None,
    "round 1 teacher val ECE before calibration": lambda rounds: rounds[1].get("teacher/val_ece_uncalibrated") if len(rounds) > 1
    else None,
    "round 1 teacher val ECE": lambda rounds: rounds[1].get("teacher/val_ece") if len(rounds) > 1 else None,
}


def candidate_details(runs: list[Outcome]) -> dict[str, dict[str, float]]:
    by_dataset: dict[str, list[Outcome]] = {}
    for outcome in runs:
        by_dataset.setdefault(outcome.job.name.split("_K")[0], []).append(outcome)
    out = {}
    for dataset, outcomes in by_dataset.items():
        rounds = [read_rounds(o) for o in outcomes]
        row = {"test": statistics.mean(o.results["best"]["test/acc"] for o in outcomes),
               "test macro-F1": statistics.mean(o.results["best"]["test/f1_macro"] for o in outcomes)}
        for name, value in DETAILS.items():
            values = [v for v in (value(r) for r in rounds) if v is not None]
            if values:
                row[name] = statistics.mean(values)
        out[dataset] = row
    return out


def peers_job(dataset: str, k: int, seed: int, variant: Variant, runs: Path) -> Job:
    return Job(overrides_for(dataset, k, seed, variant), runs / f"{dataset}_K{k}_peers_s{seed}")


def full_job(dataset: str, lr: float, seed: int, variant: Variant, runs: Path) -> Job:
    recipe = {"lr": lr, "epochs": FULL_EPOCHS}
    overrides = overrides_for(dataset, None, seed, variant) + recipe_overrides(recipe) + PLAIN
    return Job(overrides, runs / f"{dataset}_full_s{seed}")


LR_KEY, EPOCHS_KEY = "model.classifier.optimizer.lr", "selftrain.supervised_epochs"


def choose_recipe(cell: dict[str, Any], variant: Variant, done: dict[str, Outcome], runs: Path) -> None:
    """Picks the cell's supervised recipe with alpaca-report's chooser: the best mean validation accuracy over
    seeds (a recipe with a failed seed drops out; ties: the first recipe of the grid)."""
    jobs = [supervised_job(cell["dataset"], cell["K"], i, s, variant, runs)
            for i in range(len(variant.grid)) for s in variant.seeds]
    records = find_runs([j.out_dir for j in jobs if j.out_dir.is_dir()])
    [choice] = choose_recipes(records, [], [LR_KEY, EPOCHS_KEY], "best:val/acc") or [None]
    grid = {(str(float(r["lr"])), str(int(r["epochs"]))): r for r in variant.grid}
    cell["grid"] = [{"recipe": grid[k], "val/acc": v} for k, v in (choice.scores if choice else {}).items()]
    cell["recipe"] = grid[choice.chosen] if choice and choice.chosen else None
    if cell["recipe"]:
        i = variant.grid.index(cell["recipe"])
        cell["supervised"] = metrics([done[supervised_job(cell["dataset"], cell["K"], i, s, variant, runs).name].results
                                      for s in variant.seeds])


def metrics(results: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Test metrics of the reported round of each run (the schedule), from its results.json."""
    return {key: [r["best"][key] for r in results] for key in ("test/acc", "test/f1_macro")}


def read_rounds(outcome: Outcome) -> list[dict[str, Any]]:
    """The run's per-round records (round 0 = supervised only)."""
    return json.loads((outcome.job.out_dir / "rounds.json").read_text())


def fill_selftrain(cell: dict[str, Any], outcomes: list[Outcome]) -> None:
    ok = [o for o in outcomes if o.ok]  # failed seeds are listed in the report's failures
    cell["selftrain"] = {
        **metrics([o.results for o in ok]),
        "best_round": [o.results["best_round"] for o in ok],
        "round0/test/acc": [read_rounds(o)[0]["test/acc"] for o in ok],
        "round0/test/f1_macro": [read_rounds(o)[0].get("test/f1_macro") for o in ok],
        "wall_time_s": [o.results["wall_time_s"] for o in ok],
        "rounds": [read_rounds(o) for o in ok],
    }


def fill_peers(cell: dict[str, Any], outcomes: list[Outcome]) -> None:
    ok = [o.results for o in outcomes if o.ok]
    for name in PEERS:
        cell[name] = {key: [r[name][key] for r in ok] for key in ("test/acc", "test/f1_macro", "seconds")}


def fill_full(cell: dict[str, Any], outcomes: list[Outcome]) -> None:
    ok = [o for o in outcomes if o.ok]
    cell["full"] = {**metrics([o.results for o in ok]), "labelled": ok[0].results["splits"]["labelled"] if ok else None}


def benchmark(
    variant_name: str,
    out_root: Path,
    extra: list[str] | tuple[str, ...] = (),
    *,
    launch: Launch | None = None,
    hardware: str | None = None,
    datasets: list[str] | None = None,
    ks: list[int] | None = None,
    seeds: list[int] | None = None,
    candidates: list[str] | None = None,
    prompt: str = "task",
) -> dict[str, Any]:
    """Runs the variant (its datasets, ks, seeds and candidates narrowed where given) through ``launch`` (default:
    one run at a time in one local sweep per phase) and writes the report. ``prompt="names"`` runs every task with
    its label names as the only prompt."""
    launch = launch or Launch(label="benchmark")
    changes = {key: value for key, value in {"datasets": datasets, "ks": ks, "seeds": seeds}.items() if value}
    if candidates:
        unknown = sorted(set(candidates) - set(VARIANTS[variant_name].candidates))
        if unknown:
            raise SystemExit(f"unknown candidates {unknown}; the variant has {sorted(VARIANTS[variant_name].candidates)}")
        changes["candidates"] = {name: VARIANTS[variant_name].candidates[name] for name in candidates}
    check_datasets(datasets or [])
    check_prompt(prompt, out_root)
    # the prompt override before the --override flags, so that those still win
    variant = replace(VARIANTS[variant_name], **changes,
                      extra=common_overrides(hardware, [*PROMPT_OVERRIDES[prompt], *extra]))
    runs = out_root / "runs"
    start = time.time()
    report: dict[str, Any] = {
        "variant": variant_name,
        "prompt": prompt,
        "started": time.strftime("%Y-%m-%d %H:%M"),
        "jobs": launch.jobs,
        "launcher": launch.launcher_name(),
        "hardware": hardware,
        "device": device_name() if not launch.reuse_only else REBUILT,
        "cells": [{"dataset": d, "K": k} for d in variant.datasets for k in variant.ks],
    }
    cells = report["cells"]
    # Phase 1: the supervised grid, every cell and seed at once.
    phase1 = [
        supervised_job(c["dataset"], c["K"], i, s, variant, runs)
        for c in cells
        for i in range(len(variant.grid))
        for s in variant.seeds
    ]
    done = {o.job.name: o for o in launch.run(phase1, "phase 1, supervised grid")}
    for cell in cells:
        choose_recipe(cell, variant, done, runs)
    # Phase 2: self-training with each cell's recipe; full supervision with the lr chosen for the dataset's
    # first K (its run folder is shared by the dataset's cells).
    chosen = [c for c in cells if c["recipe"]]
    selftrain = {
        (name, c["dataset"], c["K"]): [
            selftrain_job(c["dataset"], c["K"], s, c["recipe"], variant, runs, name) for s in variant.seeds
        ]
        for name in variant.candidates
        for c in chosen
    }
    full_lr: dict[str, float] = {}
    for c in chosen:
        full_lr.setdefault(c["dataset"], c["recipe"]["lr"])
    full = {d: [full_job(d, lr, s, variant, runs) for s in variant.seeds[:1]] for d, lr in full_lr.items()}
    phase2 = [job for group in [*selftrain.values(), *full.values()] for job in group]
    done = {o.job.name: o for o in launch.run(phase2, "phase 2, self-training and full supervision")}
    peers: dict[tuple[str, int], list[Outcome]] = {}
    if variant.peers:  # phase 3: the peers on each cell's splits (their own Hydra app, experiments/peers.py)
        peer_launch = replace(launch, app="experiments.peers", label="peers", failures=[], reused=[])
        peer_jobs = {(c["dataset"], c["K"]): [peers_job(c["dataset"], c["K"], s, variant, runs) for s in variant.seeds]
                     for c in cells}
        finished = {o.job.name: o for o in peer_launch.run([j for js in peer_jobs.values() for j in js], "phase 3, peers")}
        peers = {cell: [finished[j.name] for j in js] for cell, js in peer_jobs.items()}
        launch.failures += peer_launch.failures
        launch.reused += peer_launch.reused
    per_candidate = {
        name: [done[job.name] for (n, _, _), group in selftrain.items() if n == name for job in group]
        for name in variant.candidates
    }
    report["selftrain_candidate"] = best = choose_candidate(report, per_candidate)
    for cell in chosen:
        if best is not None:
            fill_selftrain(cell, [done[job.name] for job in selftrain[best, cell["dataset"], cell["K"]]])
        fill_full(cell, [done[job.name] for job in full[cell["dataset"]]])
        if (cell["dataset"], cell["K"]) in peers:
            fill_peers(cell, peers[cell["dataset"], cell["K"]])
    report["summary"] = summary(chosen)
    report["finished"] = time.strftime("%Y-%m-%d %H:%M")
    report["wall_time_s"] = round(time.time() - start, 1)
    report["failures"] = failure_report(launch)
    report["runs_reused_from_earlier_invocations"] = sorted(set(launch.reused))
    write_report(report, variant, out_root)
    write_alpaca_report(runs, out_root / "alpaca_report")
    return report


def check_datasets(datasets: list[str]) -> None:
    unknown = [d for d in datasets if d not in MAX_LENGTH]
    if unknown:
        raise SystemExit(f"unknown datasets {unknown}: the benchmark knows {sorted(MAX_LENGTH)}. Add a conf/task/ "
                         f"config and its token cap to MAX_LENGTH in experiments/benchmark.py.")


def check_prompt(prompt: str, out_root: Path) -> None:
    """Refuses a folder whose runs used the other prompt mode: its finished runs would be reused as if they were
    this mode's (a run folder is reused by its name alone)."""
    if prompt not in PROMPT_OVERRIDES:
        raise SystemExit(f"unknown prompt mode '{prompt}'; use one of {sorted(PROMPT_OVERRIDES)}")
    saved = out_root / "results.json"
    earlier = json.loads(saved.read_text()).get("prompt", "task") if saved.is_file() else prompt
    if earlier != prompt:
        raise SystemExit(f"{out_root} holds runs of --prompt {earlier}, not {prompt}: give another --out, or leave "
                         f"--out at its default ({default_out('<variant>', prompt).name}).")


def default_out(variant_name: str, prompt: str) -> Path:
    """experiments/results/benchmark_<variant>, with the suffix _names for the label-names-only runs."""
    suffix = "" if prompt == "task" else f"_{prompt}"
    return REPO_ROOT / "experiments" / "results" / f"benchmark_{variant_name}{suffix}"


def write_alpaca_report(runs: Path, out: Path) -> None:
    """The alpaca-train rows as ``alpaca-report`` gives them, grouped by every config key that differs (its chooser
    picks each group's recipe on validation, as above): the same numbers from the generic command."""
    if any(runs.rglob("config_resolved.yaml")):
        aggregate.report([runs], out, choose=[LR_KEY, EPOCHS_KEY],
                         metrics=["best:val/acc", "best:test/acc", "best:test/f1_macro", "supervised_only:test/acc"])


# summary keys: "supervised", "gain", ... for test accuracy; the same with this suffix for test macro-F1
F1_SUFFIX = " F1"


def summary(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """The yardsticks per cell, in test accuracy and (keys ending in " F1") test macro-F1: each row's mean, the
    self-training gain over supervised (against the supervised seed std of accuracy), and the share of the
    supervised-to-full gap that self-training closes."""
    out = {}
    for cell in cells:
        sup, st, full = (cell.get(key, {}).get("test/acc") for key in ("supervised", "selftrain", "full"))
        if not (sup and st and full):
            continue
        row = {}
        for metric, suffix in (("test/acc", ""), ("test/f1_macro", F1_SUFFIX)):
            row.update(summary_means(cell, metric, suffix))
        row["supervised std"] = mean_std(sup)[1]
        out[f"{cell['dataset']} K={cell['K']}"] = row
    if out:
        keys = set.intersection(*(set(r) for r in out.values()))
        out["mean"] = {key: statistics.mean(r[key] for r in out.values()) for key in keys}
    return out


def summary_means(cell: dict[str, Any], metric: str, suffix: str) -> dict[str, float]:
    """One metric's summary of a cell: each row's mean, round 0 of self-training, the gain and the gap closed."""
    rows = ("supervised", "selftrain", "full", *PEERS)
    means = {name + suffix: statistics.mean(cell[name][metric]) for name in rows if cell.get(name, {}).get(metric)}
    round0 = [v for v in cell["selftrain"].get(f"round0/{metric}", []) if v is not None]
    if round0:
        means["selftrain round 0" + suffix] = statistics.mean(round0)
    sup, st, full = (means.get(name + suffix) for name in ("supervised", "selftrain", "full"))
    if sup is not None and st is not None and full is not None:
        means["gain" + suffix] = st - sup
        # full supervision no better than supervised only: no gap to close
        means["gap closed" + suffix] = (st - sup) / (full - sup) if full != sup else math.nan
    return means


# --- the report ----------------------------------------------------------------------------------------------------


def per_round(rounds: list[list[dict[str, Any]]], key: str) -> str:
    """Mean over seeds of a per-round value, rounds joined by ' / '."""
    depth = max((len(r) for r in rounds), default=0)
    out = []
    for i in range(depth):
        values = [r[i][key] for r in rounds if i < len(r) and key in r[i]]
        if values:
            mean = statistics.mean(values)
            out.append(f"{100 * mean:.0f}" if key.endswith(("acc", "ece")) else f"{mean:.0f}")
        else:
            out.append("-")
    return " / ".join(out)


def mean_or_dash(values: list[float], unit: str = "") -> str:
    return f"{statistics.mean(values):.0f}{unit}" if values else "-"


def header(report: dict[str, Any]) -> str:
    """Where and how the runs ran: device, runs at a time, hardware config, wall time."""
    hardware = f", hardware={report['hardware']}" if report.get("hardware") else ""
    if report["device"] == REBUILT:  # this invocation ran nothing: its launcher and wall time describe no run
        return f"Ran on {report['device']}{hardware}; each run's own time is in s/run."
    wall = f"; wall time {report['wall_time_s'] / 60:.1f} min" if "wall_time_s" in report else ""
    launcher = f" through launcher={report['launcher']}" if report.get("launcher") else ""
    return f"Ran on {report['device']}, {report['jobs']} run(s) at a time{launcher}{hardware}{wall}."


def table_row(*columns: object) -> str:
    return "| " + " | ".join(str(c) for c in columns) + " |"


def cell_rows(cell: dict[str, Any]) -> list[str]:
    d, k, recipe = cell["dataset"], cell["K"], cell["recipe"]
    if not recipe:
        return [table_row(d, k, "supervised only", "failed", "failed", "every supervised recipe had a failed run")]
    sup, full = cell["supervised"], cell["full"]
    st = cell.get("selftrain", {"test/acc": [], "test/f1_macro": [], "rounds": [], "best_round": [], "wall_time_s": []})
    st_notes = (
        f"reported rounds {st['best_round']} (round 0: {fmt(st.get('round0/test/acc', []))}); "
        f"test acc per round {per_round(st['rounds'], 'test/acc')}; "
        f"pseudo-label acc per round {per_round(st['rounds'], 'pseudo/acc')}; "
        f"teacher val ECE per round {per_round(st['rounds'], 'teacher/val_ece')}; "
        f"selected {per_round(st['rounds'], 'pseudo/count')}; {mean_or_dash(st['wall_time_s'], ' s')}/run"
    )
    full_notes = f"{full['labelled']} gold labels (capped pool), {FULL_EPOCHS} epochs, one seed"
    return [
        table_row(
            d,
            k,
            "supervised only",
            fmt(sup["test/acc"]),
            fmt(sup["test/f1_macro"]),
            f"lr {recipe['lr']}, {recipe['epochs']} epochs (chosen on validation)",
        ),
        table_row(d, k, "self-training", fmt(st["test/acc"]), fmt(st["test/f1_macro"]), st_notes),
        *peer_rows(cell),
        table_row(d, "-", "full supervision", fmt(full["test/acc"]), fmt(full["test/f1_macro"]), full_notes),
    ]


PEER_ROWS = {
    "logistic_regression": ("logistic regression (frozen encoder)", "scikit-learn defaults on sentence embeddings"),
    "setfit": ("SetFit", "setfit 1.x default recipe, same backbone"),
}


def peer_rows(cell: dict[str, Any]) -> list[str]:
    return [
        table_row(cell["dataset"], cell["K"], row, fmt(cell[name]["test/acc"]), fmt(cell[name]["test/f1_macro"]),
                  f"{notes}; {mean_or_dash(cell[name]['seconds'], ' s')}/run")
        for name, (row, notes) in PEER_ROWS.items()
        if name in cell
    ]


def summary_lines(report: dict[str, Any]) -> list[str]:
    rows = report.get("summary", {})
    if not rows:
        return []
    columns = ["supervised", "selftrain round 0", "selftrain", *PEERS, "full"]
    lines = [
        "",
        "Mean test accuracy / macro-F1 per row (%); gain = self-training − supervised (points), against the "
        "supervised seed std (of accuracy); gap closed = gain / (full − supervised):",
        "",
        table_row("cell", *columns, "gain", "supervised std", "gap closed"),
        "|---" * (len(columns) + 4) + "|",
    ]
    for name, row in rows.items():
        values = [acc_and_f1(row, c, "{:.1f}") for c in columns]
        lines.append(table_row(name, *values, acc_and_f1(row, "gain", "{:+.1f}"),
                               f"{100 * row['supervised std']:.1f}", acc_and_f1(row, "gap closed", "{:.0f}%")))
    return lines


def acc_and_f1(row: dict[str, float], key: str, form: str) -> str:
    """'accuracy / macro-F1' of a summary key in %, each '-' where absent or undefined (results.json of runs made
    before macro-F1 was summarised has no F1 keys)."""
    def one(value: float | None) -> str:
        return "-" if value is None or math.isnan(value) else form.format(100 * value)

    acc, f1 = one(row.get(key)), one(row.get(key + F1_SUFFIX))
    return "-" if acc == f1 == "-" else f"{acc} / {f1}"


def failure_lines(report: dict[str, Any]) -> list[str]:
    if not report.get("failures"):
        return []
    return ["", "Runs without results (failed: traceback in <run folder>/error.txt; or not run):", ""] + [
        f"- {f['run']}: {f['error'].splitlines()[0] if f['error'] else ''}" for f in report["failures"]
    ]


def candidate_lines(report: dict[str, Any], variant: Variant) -> list[str]:
    if len(variant.candidates) < 2 or not report.get("candidates"):
        return []
    lines = [
        "",
        f"Self-training settings tried (mean over every dataset, K and seed; the row above uses the one with the best "
        f"validation accuracy: `{report['selftrain_candidate']}`):",
        "",
        "| candidate | overrides | val acc (reported round) | test acc (reported round) | test macro-F1 |",
        "|---|---|---|---|---|",
    ]
    for c in report["candidates"]:
        overrides = " ".join(variant.candidates[c["candidate"]]) or "(the config in conf/)"
        f1 = f"{100 * c['test/f1_macro']:.1f}" if "test/f1_macro" in c else "-"
        lines.append(table_row(c["candidate"], overrides, f"{100 * c['val/acc']:.1f}", f"{100 * c['test/acc']:.1f}",
                               f1))
    for name in report.get("candidates_incomplete", []):
        lines.append(table_row(name, " ".join(variant.candidates[name]), "incomplete", "not compared (runs missing)",
                               "-"))
    columns = ["test", "test macro-F1", *DETAILS]
    lines += ["", "Per dataset, mean over seeds (accuracies, macro-F1 and ECE in %; test at the reported round):", "",
              table_row("candidate", "dataset", *columns), "|---" * (len(columns) + 2) + "|"]
    for c in report["candidates"]:
        for dataset, row in c.get("per_dataset", {}).items():
            cells = [("-" if key not in row else f"{row[key]:.0f}" if key.endswith("selected")
                      else f"{100 * row[key]:.1f}") for key in columns]
            lines.append(table_row(c["candidate"], dataset, *cells))
    return lines


def write_report(report: dict[str, Any], variant: Variant, out_root: Path) -> None:
    out_root.mkdir(parents=True, exist_ok=True)
    (out_root / "results.json").write_text(json.dumps(report, indent=2))
    intro = (
        f"Variant `{report['variant']}`, prompt: {PROMPT_TITLES[report.get('prompt', 'task')]}. Seeds "
        f"{variant.seeds}, pool capped at {variant.pool_size}, test capped at {variant.test_size}. Test accuracy / "
        f"macro-F1 in %, mean ± std over seeds. {header(report)}"
    )
    lines = [intro, "", "| dataset | K | row | test acc | test macro-F1 | notes |", "|---|---|---|---|---|---|"]
    for cell in report["cells"]:
        lines += cell_rows(cell)
    lines += summary_lines(report)
    lines += candidate_lines(report, variant)
    (out_root / "results.md").write_text("\n".join(lines + failure_lines(report)) + "\n")
    plot(report, out_root / "test_acc_per_round.png")


def plot(report: dict[str, Any], path: Path) -> None:
    """Test accuracy per round, one line per seed; one panel per dataset (columns) and K (rows)."""
    cells = report["cells"]
    datasets = list(dict.fromkeys(c["dataset"] for c in cells))
    ks = list(dict.fromkeys(c["K"] for c in cells))
    fig, axes = plt.subplots(len(ks), len(datasets), figsize=(4 * len(datasets), 3.2 * len(ks)), squeeze=False)
    for cell in cells:
        ax = axes[ks.index(cell["K"])][datasets.index(cell["dataset"])]
        for seed, seed_rounds in enumerate(cell.get("selftrain", {}).get("rounds", [])):
            ax.plot([r["round"] for r in seed_rounds], [100 * r["test/acc"] for r in seed_rounds], marker="o",
                    alpha=0.7, label=f"seed run {seed + 1}")
            best = [r for r in seed_rounds if r.get("best")]
            ax.scatter([r["round"] for r in best], [100 * r["test/acc"] for r in best], s=150, facecolors="none",
                       edgecolors="black", zorder=3)
        for key, style, label in (("supervised", ":", "supervised only"), ("full", "--", "full supervision")):
            if cell.get(key, {}).get("test/acc"):
                ax.axhline(100 * statistics.mean(cell[key]["test/acc"]), linestyle=style, color="gray", label=label)
        ax.set_title(f"{cell['dataset']}, K={cell['K']} (circled: the reported round)", fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("round (0 = supervised only)")
        ax.set_ylabel("test accuracy (%)")
        ax.legend(loc="best", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="quick")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: experiments/results/benchmark_<variant>, + _names with --prompt names")
    parser.add_argument("--ks", nargs="+", type=int, help="replace the variant's labels per class")
    parser.add_argument("--candidates", nargs="+", help="run only these of the variant's self-training candidates")
    parser.add_argument("--prompt", choices=sorted(PROMPT_OVERRIDES), default="task",
                        help="task: the task configs' prompts; names: the label names only (adds task.prompt=null)")
    add_common_flags(parser)
    args = parser.parse_args()
    register_resolvers()
    out = args.out or default_out(args.variant, args.prompt)
    report = benchmark(
        args.variant,
        out,
        args.override,
        launch=launch_from_args(args, "benchmark"),
        hardware=args.hardware,
        datasets=args.datasets,
        ks=args.ks,
        seeds=args.seeds,
        candidates=args.candidates,
        prompt=args.prompt,
    )
    print((out / "results.md").read_text())
    print(f"report: {out}/results.md, plot: {out}/test_acc_per_round.png, started {report['started']}")
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
