"""``alpaca-reproduce RUN_FOLDER``: run a finished run again from its saved resolved config and seed, into a new
folder, and compare every recorded metric with the new run's.

    alpaca-reproduce outputs/rotten_tomatoes/2026-11-29_23-25-05            # -> <run>/reproduced/
    alpaca-reproduce <run> --out /tmp/again --tolerance 1e-3                  # e.g. on a GPU

The config is the run's ``config_resolved.yaml``; its SHA-256 in ``run_info.json`` must match, so an edited config
cannot pass as the recorded run. The splits are drawn again from the config's data and seed, and their
fingerprints (``splits.json``: size and SHA-256 of each split's texts and labels) must equal the recorded ones, so a
changed data file is named as such rather than showing up as different metrics. A different git commit, uncommitted changes or different package versions are
named as warnings (the metrics may then legitimately differ). Exit status 0: every metric matches.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from alpaca_lightning.errors import AlpacaError
from alpaca_lightning.run_info import SPLITS_FILE, git_state, package_versions

COMPARED_SECTIONS = ("supervised_only", "best")


def load_recorded(run_dir: Path) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """The run's config, run_info and results, after checking that they are complete and untouched."""
    paths = {name: run_dir / name for name in ("config_resolved.yaml", "run_info.json", "results.json")}
    missing = [name for name, path in paths.items() if not path.is_file()]
    if missing:
        raise AlpacaError(f"{run_dir} lacks {missing}: only a finished run can be reproduced.")
    info = json.loads(paths["run_info.json"].read_text())
    text = paths["config_resolved.yaml"].read_text()
    recorded_hash = info.get("config_sha256")
    if recorded_hash is None:
        raise AlpacaError(f"{run_dir}/run_info.json has no config_sha256 (a run from before alpaca-reproduce); "
                          f"re-run it with alpaca-train to get a reproducible record.")
    if hashlib.sha256(text.encode()).hexdigest() != recorded_hash:
        raise AlpacaError(f"{run_dir}/config_resolved.yaml was changed after the run (its SHA-256 differs from "
                          f"run_info.json's). Reproduce the recorded config, or start a new run with alpaca-train.")
    return OmegaConf.create(text), info, json.loads(paths["results.json"].read_text())


def environment_warnings(info: dict[str, Any]) -> list[str]:
    warnings = []
    recorded, now = info.get("git", {}), git_state()
    if recorded.get("commit") != now.get("commit"):
        warnings.append(f"git commit differs: recorded {recorded.get('commit')}, now {now.get('commit')}")
    if now.get("dirty"):
        warnings.append("the working tree has uncommitted changes")
    versions_now = package_versions()
    for name, version in (info.get("versions") or {}).items():
        if versions_now.get(name) != version:
            warnings.append(f"{name} differs: recorded {version}, now {versions_now.get(name)}")
    return warnings


def compare(recorded: dict[str, Any], new: dict[str, Any], tolerance: float) -> list[str]:
    """The metrics of results.json's supervised-only and best sections that differ by more than ``tolerance``."""
    problems = []
    for section in COMPARED_SECTIONS:
        for key, value in recorded.get(section, {}).items():
            other = new.get(section, {}).get(key)
            if not isinstance(value, (int, float)) or not isinstance(other, (int, float)):
                if value != other:
                    problems.append(f"{section}/{key}: recorded {value}, now {other}")
            elif not math.isclose(value, other, rel_tol=0.0, abs_tol=tolerance):
                problems.append(f"{section}/{key}: recorded {value}, now {other}")
    if recorded.get("best_round") != new.get("best_round"):
        problems.append(f"best_round: recorded {recorded.get('best_round')}, now {new.get('best_round')}")
    return problems


def reproduce(run_dir: Path, out: Path | None = None, tolerance: float = 0.0) -> dict[str, Any]:
    from alpaca_lightning.pipeline import run

    run_dir = Path(run_dir)
    cfg, info, recorded = load_recorded(run_dir)
    warnings = environment_warnings(info)
    out = Path(out) if out is not None else run_dir / "reproduced"
    if out.exists() and any(out.iterdir()):
        raise AlpacaError(f"{out} is not empty; give --out a new folder (a reproduction never resumes).")
    # every value that pointed into the old run folder (output dir, logger dirs) now points into the new one
    cfg = OmegaConf.create(OmegaConf.to_yaml(cfg).replace(str(cfg.paths.output_dir), str(out)))
    new = run(cfg)
    differences = split_differences(run_dir, out) + compare(recorded, new, tolerance)
    return {"warnings": warnings, "differences": differences, "out": str(out)}


def split_differences(run_dir: Path, out: Path) -> list[str]:
    """The splits whose fingerprint differs from the recorded one (runs from before splits.json: none checked)."""
    recorded_file = run_dir / SPLITS_FILE
    if not recorded_file.is_file():
        return []
    recorded, new = (json.loads(path.read_text()) for path in (recorded_file, out / SPLITS_FILE))
    return [
        f"split '{name}' differs from the recorded one (recorded {recorded[name]}, now {new.get(name)}): the data "
        f"files or their reading changed"
        for name in recorded if recorded[name] != new.get(name)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="alpaca-reproduce", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a finished run folder (holds results.json)")
    parser.add_argument("--out", type=Path, help="where the new run goes (default: <run_dir>/reproduced)")
    parser.add_argument("--tolerance", type=float, default=0.0,
                        help="largest absolute difference accepted per metric (0: identical, as on CPU)")
    args = parser.parse_args(argv)
    try:
        outcome = reproduce(args.run_dir, args.out, args.tolerance)
    except AlpacaError as err:
        print(f"alpaca-reproduce: error: {err}", file=sys.stderr)
        return 2
    for warning in outcome["warnings"]:
        print(f"alpaca-reproduce: warning: {warning}", file=sys.stderr)
    if outcome["differences"]:
        print("alpaca-reproduce: the metrics differ:\n  " + "\n  ".join(outcome["differences"]), file=sys.stderr)
        return 1
    print(f"alpaca-reproduce: every recorded metric matches (tolerance {args.tolerance}); new run: {outcome['out']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
