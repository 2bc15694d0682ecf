"""Try settings on the splits of a finished benchmark, reusing each split's round-0 stages.

    python experiments/reuse_stages.py --source experiments/results/benchmark_cpu --out experiments/results/st_x \
        "lr2e-5_all:model.classifier.optimizer.lr=2e-5" "probe_only:selftrain.supervised_epochs=0,selftrain.max_rounds=0"

Each setting is NAME:OVERRIDE[,OVERRIDE...] ("NAME:" alone is the source's config as the code stands now). It runs on
every dataset and seed of the source: the source variant's split settings and the supervised recipe that the source
chose on validation, then the setting's overrides (an override of a key that the job already sets replaces it). The
`stages/` folder of the source's self-training run of that split is copied into the new run folder first, so only
round 0 and the rounds run: a few minutes per setting instead of an hour. That is valid only for settings that the
stages do not read (learning rates after the stages, rounds, filters, calibration). Run folders: <out>/runs/<dataset>_
<name>_s<seed>; finished ones are reused. Prints the mean validation and test accuracy per setting and dataset, and
writes them with the command to <out>/results.md.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python experiments/reuse_stages.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alpaca_lightning.artifacts import atomic_write_text, read_json
from experiments.benchmark import VARIANTS, overrides_for, recipe_overrides
from experiments.launch import Job, Launch, Outcome


def parse_setting(text: str) -> tuple[str, list[str]]:
    name, _, overrides = text.partition(":")
    if not name:
        raise SystemExit(f"a setting is NAME:OVERRIDE[,OVERRIDE...], got '{text}'")
    # commas inside brackets belong to a list value, e.g. filters=[confidence,distribution_alignment]
    return name, [o for o in re.split(r",(?![^\[]*\])", overrides) if o]


def with_overrides(base: list[str], extra: list[str]) -> list[str]:
    keys = {o.split("=", 1)[0] for o in extra}
    return [o for o in base if o.split("=", 1)[0] not in keys] + extra


def setting_jobs(source: Path, out: Path, name: str, extra: list[str], datasets: list[str] | None = None) -> list[Job]:
    report = read_json(source / "results.json")
    variant = VARIANTS[report["variant"]]
    jobs = []
    for cell in report["cells"]:
        if datasets and cell["dataset"] not in datasets:
            continue
        dataset, k = cell["dataset"], cell["K"]
        for seed in variant.seeds:
            folder = out / "runs" / f"{dataset}_{name}_s{seed}"
            stages = source / "runs" / f"{dataset}_K{k}_selftrain_s{seed}" / "stages"
            if not (folder / "stages").exists() and stages.is_dir():
                shutil.copytree(stages, folder / "stages")
            base = overrides_for(dataset, k, seed, variant) + recipe_overrides(cell["recipe"])
            jobs.append(Job(with_overrides(base, extra), folder))
    return jobs


def summary_lines(name: str, outcomes: list[Outcome]) -> list[str]:
    by_dataset: dict[str, list[dict]] = {}
    for outcome in outcomes:
        if outcome.ok:
            by_dataset.setdefault(outcome.job.name.split("_")[0], []).append(outcome.results)
    lines = []
    for dataset, results in by_dataset.items():
        val = statistics.mean(100 * r["best"]["val/acc"] for r in results)
        test = statistics.mean(100 * r["best"]["test/acc"] for r in results)
        round_0 = statistics.mean(100 * r["supervised_only"]["test/acc"] for r in results)
        lines.append(f"{name:20s} {dataset:8s} runs {len(results)}  val {val:5.1f}  test {test:5.1f}  "
                     f"(round 0 test {round_0:5.1f})")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True, help="a finished benchmark.py output folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--datasets", nargs="+", help="only these datasets of the source (default: all)")
    parser.add_argument("settings", nargs="+", help="NAME:OVERRIDE[,OVERRIDE...]")
    args = parser.parse_args()
    launch = Launch(launcher="local", jobs=args.jobs, label="reuse_stages")
    lines = []
    for name, extra in map(parse_setting, args.settings):
        outcomes = launch.run(setting_jobs(args.source, args.out, name, extra, args.datasets), title=name)
        lines += summary_lines(name, outcomes)
    print("\n".join(lines))
    command = " ".join(["python experiments/reuse_stages.py", *sys.argv[1:]])
    atomic_write_text(args.out / "results.md", f"`{command}`\n\n```\n" + "\n".join(lines) + "\n```\n")
    return 1 if launch.failures else 0


if __name__ == "__main__":
    sys.exit(main())
