"""Run outputs a person reads: the per-round table (CSV, JSON), results.json and the one-screen summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from rich import box
from rich.console import Console
from rich.table import Table

from alpaca_lightning.artifacts import atomic_write_csv, atomic_write_json, read_json
from alpaca_lightning.selftrain.run_report import chosen_by, write_run_plot, write_run_report

# record key -> short column header of the summary table (it must fit an 80-column terminal)
ROUND_COLUMNS = {
    "round": "round", "train_size": "train", "pseudo/count": "pseudo", "pseudo/acc": "pl_acc", "val/acc": "val_acc",
    "val/f1_macro": "val_f1", "val/f1": "val_f1", "test/acc": "test_acc", "test/f1_macro": "test_f1",
    "test/f1": "test_f1", "wall_time_s": "secs",
}
# metrics shown in %, and the ones whose gain over round 0 results.json reports (entity F1: "f1")
PERCENT_METRICS = ("acc", "f1_macro", "/f1")


def build_results(records: list[dict[str, Any]], stop_reason: str, extra: dict[str, Any]) -> dict[str, Any]:
    best = next(r for r in records if r.get("best"))
    base = records[0]
    metric_keys = [k for k in base if k.startswith(("val/", "test/"))]
    results = {
        **extra,
        "rounds_run": len(records),
        "best_round": best["round"],
        "stop_reason": stop_reason,
        "supervised_only": {k: base[k] for k in metric_keys},
        "best": {k: best.get(k) for k in metric_keys},
        "gain": {k: best[k] - base[k] for k in metric_keys if k.endswith(PERCENT_METRICS)},
    }
    return results


def write_outputs(
    run_dir: Path, records: list[dict[str, Any]], results: dict[str, Any], label_names: list[str]
) -> None:
    """The round tables, figures and report, then results.json last: a run whose results.json exists is finished,
    with every output in place (a crash in between leaves no results.json, and the re-run rewrites them all)."""
    run_dir = Path(run_dir)
    atomic_write_csv(run_dir / "rounds.csv", pd.DataFrame(records))
    atomic_write_json(run_dir / "rounds.json", records)
    write_run_plot(run_dir, records)
    write_run_report(run_dir, records, results, label_names)
    atomic_write_json(run_dir / "results.json", results)


def finished_results(run_dir: Path, config_sha256: str) -> dict[str, Any] | None:
    """results.json of a run finished in ``run_dir`` under this very config, else None (the run goes ahead and
    reuses whatever units are complete)."""
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        return None
    results = read_json(path)  # written atomically: present means complete
    return results if results.get("config_sha256") == config_sha256 else None


def _fmt(key: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if key.endswith(PERCENT_METRICS):
        return f"{100 * value:.1f}"
    if isinstance(value, float):
        return f"{value:.0f}"
    return str(value)


HEADLINE_NAMES = {"test/acc": "test accuracy", "test/f1": "test entity F1", "test/f1_macro": "test macro-F1"}


def print_summary(records: list[dict[str, Any]], results: dict[str, Any], run_dir: Path) -> None:
    console = Console()
    table = Table(
        title=f"alpaca_lightning: {results.get('task', '')}, seed {results.get('seed')} (accuracy and F1 in %)",
        box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False,
    )
    columns = [c for c in ROUND_COLUMNS if any(c in r for r in records)]
    for column in columns:
        table.add_column(ROUND_COLUMNS[column], justify="right", no_wrap=True, min_width=len(ROUND_COLUMNS[column]))
    for record in records:
        cells = [_fmt(c, record.get(c)) for c in columns]
        cells[0] += "*" if record.get("best") else " "  # the reported round (the schedule)
        table.add_row(*cells)
    console.print(table)
    headline = "test/" + results.get("monitor", "val/acc").split("/", 1)[1]  # the task's own: accuracy, entity F1
    headline = headline if headline.endswith(PERCENT_METRICS) else "test/acc"  # e.g. monitor=val/nll
    if headline in results["supervised_only"]:
        sup, best = results["supervised_only"][headline], results["best"][headline]
        console.print(
            f"{HEADLINE_NAMES.get(headline, headline)}: supervised only (round 0) [bold]{100 * sup:.1f}%[/bold]  ->  "
            f"round {results['best_round']} [bold]{100 * best:.1f}%[/bold]  (gain {100 * (best - sup):+.1f} points)"
        )
    console.print(f"* the reported round ({chosen_by(results)}); stopped: {results['stop_reason']}")
    console.print(f"outputs: {run_dir}  (results.json, rounds.csv, rounds/round_*/)")
    if results.get("use_command"):
        console.print(f"use the model: {results['use_command']}", soft_wrap=True)
