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
import shlex
import shutil
import statistics
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python experiments/reuse_stages.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alpaca_lightning.artifacts import atomic_write_text, read_json
from experiments.benchmark import VARIANTS, overrides_for, recipe_overrides
from experiments.launch import Job, Launch


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


def mean_per_round(runs: list[list[dict]], key: str) -> str:
    """Mean of ``key`` (in %) per round over runs, " / "-joined; '-' where no run has it (round 0's pseudo-labels),
    and "(n runs)" after a mean over fewer runs than round 0's (the others stopped earlier)."""
    cells = []
    for k in range(max(len(rounds) for rounds in runs)):
        reached = [rounds for rounds in runs if len(rounds) > k]
        values = [100 * rounds[k][key] for rounds in reached if rounds[k].get(key) is not None]
        cell = f"{statistics.mean(values):.1f}" if values else "-"
        cells.append(cell + (f" ({len(reached)} runs)" if len(reached) < len(runs) else ""))
    return " / ".join(cells)


def _groups(out: Path) -> dict[tuple[str, str], list[Path]]:
    """Finished run folders under ``out/runs`` (named <dataset>_<setting>_s<seed>) by (setting, dataset)."""
    groups: dict[tuple[str, str], list[Path]] = {}
    for folder in sorted((out / "runs").glob("*_s*")):
        if (folder / "results.json").is_file() and (folder / "rounds.json").is_file():
            dataset, _, rest = folder.name.partition("_")
            groups.setdefault((rest.rsplit("_s", 1)[0], dataset), []).append(folder)
    return groups


def summary_rows(out: Path) -> list[str]:
    """One markdown row per (setting, dataset) over every finished run folder under ``out/runs`` (named
    <dataset>_<setting>_s<seed>), so that several invocations with the same --out build one table."""
    rows = []
    for (name, dataset), folders in sorted(_groups(out).items()):
        results = [read_json(f / "results.json") for f in folders]
        rounds = [read_json(f / "rounds.json") for f in folders]
        val = statistics.mean(100 * r["best"]["val/acc"] for r in results)
        tests = [100 * r["best"]["test/acc"] for r in results]
        spread = f" ± {statistics.stdev(tests):.1f}" if len(tests) > 1 else ""
        rows.append(f"| {name} | {dataset} | {len(folders)} | {val:.1f} | {statistics.mean(tests):.1f}{spread} | "
                    f"{mean_per_round(rounds, 'test/acc')} | {mean_per_round(rounds, 'pseudo/acc')} | "
                    f"{mean_per_round(rounds, 'teacher/val_ece')} |")
    return rows


def teacher_rows(out: Path) -> list[str]:
    """Round 1's teachers on the pool (``teacher_<name>/pool_acc``; ``fused`` is what the filters read) and its
    selection, one markdown row per (setting, dataset): how right each teacher was, before any student."""
    rows = []
    for (name, dataset), folders in sorted(_groups(out).items()):
        firsts = [r[1] for r in (read_json(f / "rounds.json") for f in folders)
                  if len(r) > 1 and r[1].get("teacher/pool_acc") is not None]
        if not firsts:
            continue
        teachers = sorted({key for r in firsts for key in r
                           if key.startswith("teacher_") and key.endswith("/pool_acc")})
        cells = [f"{t.removeprefix('teacher_').removesuffix('/pool_acc')} "
                 f"{statistics.mean(100 * r[t] for r in firsts if r.get(t) is not None):.1f}" for t in teachers]
        cells.append(f"fused {statistics.mean(100 * r['teacher/pool_acc'] for r in firsts):.1f}")
        selected = statistics.mean(r["pseudo/count"] for r in firsts)
        precision = [100 * r["pseudo/acc"] for r in firsts if r.get("pseudo/acc") is not None]
        right = f"{statistics.mean(precision):.1f}" if precision else "-"
        rows.append(f"| {name} | {dataset} | {len(firsts)} | {', '.join(cells)} | {selected:.0f} | {right} |")
    return rows


def write_summary(out: Path, command: str) -> str:
    """Rewrite ``out/results.md``: the commands that filled the folder (this one added) and the table."""
    previous = (out / "results.md").read_text() if (out / "results.md").is_file() else ""
    commands = [line for line in previous.splitlines() if line.startswith("`python experiments/reuse_stages.py")]
    commands += [f"`{command}`"] if f"`{command}`" not in commands else []
    table = ["| setting | dataset | runs | val acc (reported round) | test acc (reported round, ± std over seeds) | "
             "test acc per round | pseudo-label acc per round | teacher's val ECE per round |",
             "|---|---|---|---|---|---|---|---|", *summary_rows(out)]
    teachers = ["| setting | dataset | runs | round 1's teachers: pool accuracy | selected | selected right |",
                "|---|---|---|---|---|---|", *teacher_rows(out)]
    text = ("Mean over seeds, %.\n\n" + "\n".join(commands) + "\n\n" + "\n".join(table) + "\n\n"
            + "\n".join(teachers) + "\n")
    atomic_write_text(out / "results.md", text)
    return "\n".join(table)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True, help="a finished benchmark.py output folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--datasets", nargs="+", help="only these datasets of the source (default: all)")
    parser.add_argument("settings", nargs="+", help="NAME:OVERRIDE[,OVERRIDE...]")
    args = parser.parse_args()
    launch = Launch(launcher="local", jobs=args.jobs, label="reuse_stages")
    for name, extra in map(parse_setting, args.settings):
        launch.run(setting_jobs(args.source, args.out, name, extra, args.datasets), title=name)
    command = " ".join(["python experiments/reuse_stages.py", *map(shlex.quote, sys.argv[1:])])
    print(write_summary(args.out, command))
    return 1 if launch.failures else 0


if __name__ == "__main__":
    sys.exit(main())
