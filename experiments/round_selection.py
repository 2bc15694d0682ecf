"""How much does each rule for choosing the reported round lose against the best round in hindsight?

    python experiments/round_selection.py experiments/results/benchmark_cpu/results.json [more results.json ...]
    python experiments/round_selection.py experiments/results/benchmark_cpu_mr/runs/mr_K8_selftrain_s[0-9]   # runs
    python experiments/round_selection.py experiments/results/ablations_gpu/results.json   # every variant's runs

Reads the per-round records that benchmark.py stores for every self-training run (cells[].selftrain.rounds; or
ablations.py's rows[].rounds, or run folders) and
applies each rule to each run. Test accuracy is used only to score a rule after the fact, never to choose a round.
Prints, per rule, the mean test accuracy of the chosen round, its regret against the hindsight-best round, and its
gain over round 0, averaged over runs and per dataset.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

Rounds = list[dict[str, Any]]


def _argbest(rounds: Rounds, key: Callable[[dict[str, Any]], tuple]) -> dict[str, Any]:
    return max(rounds, key=key)


RULES: dict[str, Callable[[Rounds], dict[str, Any] | None]] = {
    # max val/acc, ties to the earliest round: the loop's rule with schedule=monitor, monitor=val/acc
    "val/acc (ties: earliest)": lambda rs: _argbest(rs, lambda r: (r["val/acc"], -r["round"])),
    "val/acc (ties: latest)": lambda rs: _argbest(rs, lambda r: (r["val/acc"], r["round"])),
    "val/acc, ties by val/nll": lambda rs: (
        _argbest(rs, lambda r: (r["val/acc"], -r["val/nll"])) if all("val/nll" in r for r in rs) else None
    ),
    "val/nll": lambda rs: _argbest(rs, lambda r: -r["val/nll"]) if all("val/nll" in r for r in rs) else None,
    "last round": lambda rs: rs[-1],  # schedule=last (the default)
    "round 0": lambda rs: rs[0],
}


def runs_of(paths: list[Path]) -> list[tuple[str, Rounds]]:
    runs = []
    for path in paths:
        if path.is_dir():  # a run folder, e.g. one of experiments/reuse_stages.py's: <dataset>_<setting>_s<seed>
            runs.append((path.name.rsplit("_s", 1)[0], json.loads((path / "rounds.json").read_text())))
            continue
        report = json.loads(path.read_text())
        for cell in report.get("cells", []):  # benchmark.py's results.json
            for rounds in cell.get("selftrain", {}).get("rounds", []):
                runs.append((f"{cell['dataset']} K={cell['K']}", rounds))
        for row in report.get("rows", []):  # ablations.py's results.json: one row per dataset and variant
            runs += [(row["dataset"], rounds) for rounds in row.get("rounds", [])]
    return runs


def score(runs: list[tuple[str, Rounds]]) -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    for name, rule in RULES.items():
        per_cell: dict[str, list[float]] = defaultdict(list)
        regret, gain = [], []
        for cell, rounds in runs:
            chosen = rule(rounds)
            if chosen is None:
                continue
            per_cell[cell].append(chosen["test/acc"])
            regret.append(max(r["test/acc"] for r in rounds) - chosen["test/acc"])
            gain.append(chosen["test/acc"] - rounds[0]["test/acc"])
        if regret:
            table[name] = {"runs": len(regret), "regret": statistics.mean(regret), "gain": statistics.mean(gain),
                           "per_cell": {c: statistics.mean(v) for c, v in per_cell.items()}}
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", type=Path,
                        help="results.json files written by benchmark.py, or run folders (with rounds.json)")
    table = score(runs_of(parser.parse_args().results))
    cells = sorted({c for row in table.values() for c in row["per_cell"]})
    print("| rule | runs | regret vs hindsight (points) | gain over round 0 (points) | "
          + " | ".join(cells) + " |")
    print("|---" * (4 + len(cells)) + "|")
    for name, row in table.items():
        per_cell = " | ".join(f"{100 * row['per_cell'][c]:.1f}" if c in row["per_cell"] else "-" for c in cells)
        print(f"| {name} | {row['runs']} | {100 * row['regret']:.2f} | {100 * row['gain']:+.2f} | {per_cell} |")


if __name__ == "__main__":
    main()
