"""What makes a run reproducible: the resolved config, the seed, package versions, the git commit, and a
fingerprint of the splits it drew (``splits.json``: a changed data file cannot pass as the recorded data)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from alpaca_lightning.artifacts import atomic_write_json, atomic_write_text
from alpaca_lightning.assets import REPO_ROOT
from alpaca_lightning.errors import ConfigError

CONFIG_FILE = "config_resolved.yaml"
# Keys that never change a run's numbers: where things go, how progress is shown or logged, how jobs launch.
RESULT_NEUTRAL_KEYS = (
    "paths", "hydra", "logger", "launcher", "trainer.enable_progress_bar", "trainer.log_every_n_steps",
    "optimized_metric", "allow_config_change", "hardware.cpu_threads",
)

if TYPE_CHECKING:
    from alpaca_lightning.data.splits import TaskSplits, TextSplit

SPLITS_FILE = "splits.json"

PACKAGES = (
    "alpaca-lightning", "torch", "pytorch-lightning", "transformers", "tokenizers", "hydra-core", "omegaconf",
    "torchmetrics", "datasets", "wandb", "numpy", "pandas",
)


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(repo: Path = REPO_ROOT) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def config_sha256(cfg: DictConfig) -> str:
    """The resolved config's fingerprint: alpaca-reproduce refuses an edited config, a finished run is only
    recognised (and a mid-stage checkpoint only resumed) under the same one."""
    return hashlib.sha256(OmegaConf.to_yaml(cfg, resolve=True).encode()).hexdigest()


def save_run_info(cfg: DictConfig, run_dir: Path, **choices: Any) -> dict[str, Any]:
    """``choices``: what the run decided from the machine (e.g. the precision plan), with why."""
    config_text = OmegaConf.to_yaml(cfg, resolve=True)
    info = {
        "seed": cfg.seed,
        "config_sha256": config_sha256(cfg),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": sys.argv,
        "host": platform.node(),
        "versions": package_versions(),
        "git": git_state(),
        **choices,
    }
    atomic_write_text(Path(run_dir) / CONFIG_FILE, config_text)
    atomic_write_json(Path(run_dir) / "run_info.json", info)
    return info


def split_fingerprint(split: TextSplit) -> dict[str, Any]:
    """Size and SHA-256 of a split's texts and labels, in order: equal exactly when the run drew the same examples."""
    digest = hashlib.sha256()
    for text, label in zip(split.texts, split.labels.tolist()):
        digest.update(repr((text, label)).encode())
    return {"size": len(split), "sha256": digest.hexdigest()}


def split_fingerprints(splits: TaskSplits) -> dict[str, dict[str, Any]]:
    parts = {"labelled": splits.labelled, "validation": splits.validation, "pool": splits.pool, "test": splits.test}
    return {name: split_fingerprint(split) for name, split in parts.items() if split is not None}


def save_split_fingerprints(run_dir: Path, splits: TaskSplits) -> None:
    atomic_write_json(Path(run_dir) / SPLITS_FILE, split_fingerprints(splits))


def check_same_config(cfg: DictConfig, run_dir: Path) -> None:
    """Refuse a run folder that holds a run of another config: resuming would mix its complete artifacts (rounds,
    teachers, stages) with the new config's. The same config (a resume) and result-neutral keys pass."""
    saved = Path(run_dir) / CONFIG_FILE
    if not saved.is_file() or cfg.get("allow_config_change", False) or not produced_anything(Path(run_dir)):
        return
    before = flat_config(OmegaConf.load(saved))
    now = flat_config(OmegaConf.create(OmegaConf.to_yaml(cfg, resolve=True)))
    changed = [key for key in sorted(before.keys() | now.keys())
               if before.get(key, "<absent>") != now.get(key, "<absent>") and not _neutral(key)]
    if changed:
        shown = "; ".join(f"{key}: {before.get(key, '<absent>')} -> {now.get(key, '<absent>')}" for key in changed[:10])
        more = f" (and {len(changed) - 10} more)" if len(changed) > 10 else ""
        raise ConfigError(
            f"{run_dir} already holds a run of another config; these keys differ: {shown}{more}."
            f"{moved_settings_hint(changed)} Give a new output folder (paths.output_dir=... hydra.run.dir=...), or add "
            f"allow_config_change=true to reuse its complete artifacts anyway (e.g. to continue with more rounds)."
        )


# settings that became config groups of the round loop: old key -> how to say it now
MOVED_TO_GROUPS = {
    "selftrain.teacher": "schedule=best_teacher (the best round teaches) or schedule=last",
    "selftrain.select_round": "schedule=monitor (report the best validation round) or schedule=last",
    "selftrain.keep_models": "schedule.keep_all_models=true|false",
    "selftrain.calibration": "calibration=teachers|temperature|none",
    "selftrain.teacher_selection": "teacher_selection=validation|all",
    "selftrain.student_init": "student_init=continue|reset|stages",
    "selftrain.stage_pseudo_per_class": "student_init.pseudo_per_class=N (with student_init=stages)",
}


def refuse_moved_settings(overrides: list[str]) -> None:
    """A command-line override of a setting that became a config group: say what to write instead."""
    for override in overrides:
        key = override.lstrip("+~").split("=", 1)[0]
        if key in MOVED_TO_GROUPS:
            raise ConfigError(f"{key} is now a config group of its own: write {MOVED_TO_GROUPS[key]}.")


def moved_settings_hint(changed: list[str]) -> str:
    """Why a folder made before the round loop's choices became config groups no longer matches its config."""
    moved = sorted({MOVED_TO_GROUPS[key].split("=")[0].split(".")[0] for key in changed if key in MOVED_TO_GROUPS})
    if not moved:
        return ""
    return (f" The folder was made before the round loop's choices became config groups ({', '.join(moved)}; e.g. "
            f"selftrain.calibration=none is now calibration=none); the same choices give the same numbers.")


def produced_anything(run_dir: Path) -> bool:
    """False for a folder that holds only the record of a run that stopped early (e.g. on a data error): its
    config may then be fixed and the same folder used again."""
    record = {CONFIG_FILE, "run_info.json", ".hydra", "error.txt"}
    return any(entry.name not in record and entry.suffix != ".log" for entry in run_dir.iterdir())


def flat_config(cfg: DictConfig) -> dict[str, Any]:
    """Dotted keys to leaf values (lists stay whole values)."""
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else str(key))
        else:
            flat[prefix] = node

    walk(OmegaConf.to_container(cfg), "")
    return flat


def _neutral(key: str) -> bool:
    return any(key == k or key.startswith(f"{k}.") for k in RESULT_NEUTRAL_KEYS)
