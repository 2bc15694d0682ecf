"""``alpaca-report``: one table from many runs (a multirun, a sweep, or any folders of runs).

    alpaca-report multirun/sst2/2026-11-29_10-00-00                      # group by every key that differs but seed
    alpaca-report multirun/a multirun/b --group-by task.name student_init --out reports/students
    alpaca-report runs/ --group-by task.name --choose model.classifier.optimizer.lr --choose-on best:val/acc

Every folder below the given ones that holds a ``config_resolved.yaml`` is a run. Finished runs (``results.json``)
are grouped by config keys; each group gets the mean ± sample std over its runs of each metric, in ``report.md``
and ``report.csv``, and the mean test accuracy per round in ``rounds.png``. Runs without ``results.json`` are
listed as failed (an ``error.txt`` or a traceback in their log) or unfinished, never averaged and never a crash.

``--choose KEY ...`` picks, per group, the values of those keys (a recipe: learning rate, epochs) whose runs have
the best mean ``--choose-on`` metric (a validation score; never test), and reports only that recipe's row: the
benchmark's tuned supervised baseline. A recipe with a failed or unfinished run is not eligible.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import statistics
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from alpaca_lightning.artifacts import atomic_write_text, read_json

DEFAULT_METRICS = ("supervised_only:test/acc", "best:test/acc", "best:val/acc", "gain:test/acc")
# keys that differ between runs without making them different experiments
IGNORED_PREFIXES = ("seed", "paths.", "hydra.", "optimized_metric", "logger.", "tags")


@dataclass
class RunRecord:
    folder: Path
    config: dict[str, Any]  # flattened, dotted keys
    results: dict[str, Any] | None = None
    rounds: list[dict[str, Any]] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.results is not None

    def metric(self, spec: str) -> float | None:
        section, _, name = spec.partition(":")
        value = (self.results or {}).get(section, {})
        value = value.get(name) if isinstance(value, dict) else None
        return float(value) if isinstance(value, (int, float)) else None


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    if isinstance(node, list):
        return {prefix[:-1]: json.dumps(node)}
    return {prefix[:-1]: node}


def read_json_if_any(path: Path) -> Any:
    """The file's JSON, or None where it is missing or unreadable (the run is then listed, not averaged)."""
    try:
        return read_json(path)
    except (OSError, json.JSONDecodeError):
        return None


def find_runs(roots: Iterable[Path]) -> list[RunRecord]:
    records = []
    for root in roots:
        root = Path(root)
        if not root.exists():
            raise FileNotFoundError(f"alpaca-report: no such folder: {root}")
        for config_file in sorted(root.rglob("config_resolved.yaml")):
            folder = config_file.parent
            config = OmegaConf.to_container(OmegaConf.load(config_file), resolve=False)
            results = read_json_if_any(folder / "results.json")
            rounds = read_json_if_any(folder / "rounds.json") or []
            records.append(RunRecord(folder, flatten(config), results if isinstance(results, dict) else None,
                                     rounds if isinstance(rounds, list) else []))
    return records


def inside_own_folder(record: RunRecord, key: str) -> bool:
    """A value naming a place in the run's own folder (e.g. logger.csv.save_dir): it differs by construction."""
    value = str(record.config.get(key))
    return any(str(folder) in value for folder in (record.folder, record.folder.resolve()))


def differing_keys(records: list[RunRecord], exclude: list[str] = ()) -> list[str]:
    """The config keys whose values differ between runs, except the seed, paths, Hydra's own settings, values that
    point into each run's own folder, and keys that another kept key already determines (task.name determines
    every task.* value): the fewest keys that still tell the groups apart, names and short keys first."""
    keys = sorted({key for record in records for key in record.config})
    differing = [
        key for key in keys
        if not key.startswith(IGNORED_PREFIXES) and key not in exclude
        and len({value_of(r, key) for r in records}) > 1
        and not all(inside_own_folder(r, key) for r in records)
    ]
    kept: list[str] = []
    for key in sorted(differing, key=lambda k: (k.count("."), not k.endswith("name"), k)):
        if splits_further(records, kept, key):
            kept.append(key)
    return sorted(kept)


def value_of(record: RunRecord, key: str) -> str:
    return json.dumps(record.config.get(key), sort_keys=True, default=str)


def splits_further(records: list[RunRecord], kept: list[str], key: str) -> bool:
    """Whether ``key`` takes two values within some group of runs that agree on every ``kept`` key."""
    seen: dict[tuple[str, ...], str] = {}
    for record in records:
        group, value = tuple(value_of(record, k) for k in kept), value_of(record, key)
        if seen.setdefault(group, value) != value:
            return True
    return False


def group_runs(records: list[RunRecord], keys: list[str]) -> dict[tuple[str, ...], list[RunRecord]]:
    groups: dict[tuple[str, ...], list[RunRecord]] = {}
    for record in records:
        values = tuple(str(record.config[key]) if key in record.config else "(unset)" for key in keys)
        groups.setdefault(values, []).append(record)
    return groups


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(groups: dict[tuple[str, ...], list[RunRecord]], metrics: list[str]) -> list[dict[str, Any]]:
    """One row per group: its key values, n, and mean / std of each metric over the runs that have it."""
    rows = []
    for values, runs in groups.items():
        row: dict[str, Any] = {"group": values, "n": len(runs)}
        for spec in metrics:
            found = [v for v in (r.metric(spec) for r in runs) if v is not None]
            row[spec] = mean_std(found) if found else None
        rows.append(row)
    return rows


@dataclass
class Choice:
    """The recipe chosen for one group: the chosen values, and every eligible recipe's mean score."""

    group: tuple[str, ...]
    chosen: tuple[str, ...] | None
    scores: dict[tuple[str, ...], float]
    ineligible: list[tuple[str, ...]]


def choose_recipes(records: list[RunRecord], keys: list[str], choose: list[str], on: str) -> list[Choice]:
    """Per value of ``keys``, the values of ``choose`` with the best mean ``on`` over their runs (ties: the recipe
    found first, i.e. in the order of the folders given). Recipes with a run that failed, never finished or lacks the metric are not eligible."""
    by_group: dict[tuple[str, ...], dict[tuple[str, ...], list[RunRecord]]] = {}
    for values, runs in group_runs(records, keys + choose).items():
        by_group.setdefault(values[:len(keys)], {})[values[len(keys):]] = runs
    choices = []
    for group, recipes in by_group.items():
        scores, ineligible = {}, []
        for recipe, runs in recipes.items():
            found = [r.metric(on) for r in runs]
            if all(v is not None for v in found):
                scores[recipe] = statistics.mean(found)
            else:
                ineligible.append(recipe)
        chosen = max(scores, key=scores.__getitem__) if scores else None
        choices.append(Choice(group, chosen, scores, ineligible))
    return choices


def choice_lines(choose: list[str], on: str, choices: list[Choice]) -> list[str]:
    lines = ["", f"## Recipes chosen on mean {on} ({', '.join(choose)})", ""]
    for choice in choices:
        tried = "; ".join(f"{', '.join(r)}: {100 * v:.1f}" for r, v in choice.scores.items())
        left = f"; not eligible (failed or unfinished runs): {choice.ineligible}" if choice.ineligible else ""
        lines.append(f"- {', '.join(choice.group) or 'all runs'}: chose {choice.chosen} from {tried or 'none'}{left}")
    return lines


def failure_reason(record: RunRecord) -> str:
    error = record.folder / "error.txt"
    if error.is_file():
        lines = error.read_text().strip().splitlines()
        return f"failed: {lines[-1] if lines else 'error.txt'}"
    return "unfinished (no results.json)"


def markdown(keys: list[str], rows: list[dict[str, Any]], metrics: list[str], problems: list[RunRecord],
             roots: list[Path], notes: list[str] = ()) -> str:
    lines = [
        "# alpaca-report", "",
        f"Runs under: {', '.join(str(r) for r in roots)}. Mean ± sample std over the runs of each group "
        "(accuracies in %).", "",
        "| " + " | ".join([*keys, "n", *metrics]) + " |",
        "|" + "---|" * (len(keys) + 1 + len(metrics)),
    ]
    for row in rows:
        cells = [*row["group"], str(row["n"])]
        cells += [format_mean_std(row[spec]) for spec in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    lines += list(notes)
    if problems:
        lines += ["", f"## Runs left out ({len(problems)})", ""]
        lines += [f"- `{record.folder}`: {failure_reason(record)}" for record in problems]
    return "\n".join(lines) + "\n"


def format_mean_std(value: tuple[float, float] | None) -> str:
    if value is None:
        return "-"
    mean, std = value
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def csv_text(keys: list[str], rows: list[dict[str, Any]], metrics: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*keys, "n", *[f"{spec} {stat}" for spec in metrics for stat in ("mean", "std")]])
    for row in rows:
        stats = [x for spec in metrics for x in (row[spec] if row[spec] is not None else ("", ""))]
        writer.writerow([*row["group"], row["n"], *stats])
    return buffer.getvalue()


def plot_rounds(keys: list[str], groups: dict[tuple[str, ...], list[RunRecord]], path: Path) -> bool:
    """Mean test accuracy per round, one line per group; False when no run has per-round test accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = False
    for values, runs in groups.items():
        per_round: dict[int, list[float]] = {}
        for run in runs:
            for record in run.rounds:
                if isinstance(record.get("test/acc"), (int, float)):
                    per_round.setdefault(int(record["round"]), []).append(100 * record["test/acc"])
        if per_round:
            xs = sorted(per_round)
            ax.plot(xs, [statistics.mean(per_round[x]) for x in xs], marker="o",
                    label=", ".join(f"{k}={v}" for k, v in zip(keys, values)) or "all runs")
            drawn = True
    if drawn:
        ax.set_xlabel("round")
        ax.set_ylabel("test accuracy (%), mean over runs")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    plt.close(fig)
    return drawn


def report(roots: list[Path], out: Path, group_by: list[str] | None = None,
           metrics: list[str] | None = None, choose: list[str] | None = None,
           choose_on: str = "best:val/acc") -> dict[str, Any]:
    records = find_runs(roots)
    if not records:
        raise FileNotFoundError(
            f"alpaca-report: no run folder (one holding config_resolved.yaml) under {[str(r) for r in roots]}."
        )
    finished = [r for r in records if r.finished]
    problems = [r for r in records if not r.finished]
    choose = list(choose or [])
    if choose and "test" in choose_on:
        raise ValueError(f"alpaca-report: --choose-on {choose_on} is a test metric; choose recipes on validation "
                         f"(e.g. best:val/acc), and report test for the chosen one.")
    keys = list(group_by) if group_by is not None else differing_keys(finished or records, exclude=choose)
    keys = [k for k in keys if k not in choose]
    unknown = [k for k in keys + choose if not any(k in r.config for r in records)]
    if unknown:
        raise KeyError(f"alpaca-report: {unknown} is not a config key of these runs (e.g. task.name, "
                       f"student_init, split.labels_per_class).")
    metrics = list(metrics or DEFAULT_METRICS)
    groups = group_runs(finished, keys + choose)
    choices, notes = [], []
    if choose:
        choices = choose_recipes(records, keys, choose, choose_on)
        chosen = {c.group + c.chosen for c in choices if c.chosen is not None}
        groups = {values: runs for values, runs in groups.items() if values in chosen}
        notes = choice_lines(choose, choose_on, choices)
    rows = summarise(groups, metrics)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "report.md", markdown(keys + choose, rows, metrics, problems, roots, notes))
    atomic_write_text(out / "report.csv", csv_text(keys + choose, rows, metrics))
    plot_rounds(keys + choose, groups, out / "rounds.png")
    return {"keys": keys + choose, "rows": rows, "problems": [str(r.folder) for r in problems], "choices": choices}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="alpaca-report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="multirun, sweep or run folders")
    parser.add_argument("--group-by", nargs="*", help="config keys (default: every key that differs but the seed)")
    parser.add_argument("--metric", nargs="+", dest="metrics",
                        help=f"<section of results.json>:<metric> (default: {' '.join(DEFAULT_METRICS)})")
    parser.add_argument("--choose", nargs="+", help="per group, keep the values of these keys with the best mean "
                        "--choose-on (e.g. model.classifier.optimizer.lr selftrain.supervised_epochs)")
    parser.add_argument("--choose-on", default="best:val/acc",
                        help="the metric that --choose maximises (default best:val/acc; never a test metric)")
    parser.add_argument("--out", type=Path, help="default: the first folder")
    args = parser.parse_args(argv)
    try:
        summary = report(args.folders, args.out or args.folders[0], args.group_by, args.metrics, args.choose,
                         args.choose_on)
    except (FileNotFoundError, KeyError, ValueError) as err:
        print(err.args[0] if err.args else err, file=sys.stderr)
        return 1
    out = args.out or args.folders[0]
    print((out / "report.md").read_text())
    print(f"alpaca-report: {len(summary['rows'])} group(s); {out}/report.md, report.csv, rounds.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
