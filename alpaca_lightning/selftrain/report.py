"""Run outputs a person reads: the per-round table (CSV, JSON), results.json and the one-screen summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from alpaca_lightning.artifacts import atomic_write_csv, atomic_write_json

ROUND_COLUMNS = ("round", "train_size", "pseudo/count", "pseudo/acc", "val/acc", "val/f1_macro", "test/acc",
                 "test/f1_macro", "wall_time_s", "best")


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
        "gain": {k: best[k] - base[k] for k in metric_keys if k.endswith(("acc", "f1_macro"))},
    }
    return results


def write_outputs(run_dir: Path, records: list[dict[str, Any]], results: dict[str, Any]) -> None:
    run_dir = Path(run_dir)
    atomic_write_csv(run_dir / "rounds.csv", pd.DataFrame(records))
    atomic_write_json(run_dir / "rounds.json", records)
    atomic_write_json(run_dir / "results.json", results)


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, bool):
        return "*" if value else ""
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) <= 1.0 else f"{value:.1f}"
    return str(value)


def print_summary(records: list[dict[str, Any]], results: dict[str, Any], run_dir: Path) -> None:
    console = Console()
    table = Table(title=f"alpaca_lightning: {results.get('task', '')} (seed {results.get('seed')})")
    columns = [c for c in ROUND_COLUMNS if any(c in r for r in records)]
    for column in columns:
        table.add_column(column, justify="right")
    for record in records:
        table.add_row(*[_fmt(record.get(c)) for c in columns])
    console.print(table)
    if "test/acc" in results["supervised_only"]:
        sup, best = results["supervised_only"]["test/acc"], results["best"]["test/acc"]
        console.print(
            f"test accuracy: supervised only (round 0) [bold]{sup:.4f}[/bold]  ->  best round {results['best_round']} "
            f"[bold]{best:.4f}[/bold]  (gain {best - sup:+.4f})"
        )
    console.print(f"stopped: {results['stop_reason']}")
    console.print(f"outputs: {run_dir}  (results.json, rounds.csv, rounds/round_*/)")
