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


def save_run_info(cfg: DictConfig, run_dir: Path, **choices: Any) -> dict[str, Any]:
    """``choices``: what the run decided from the machine (e.g. the precision plan), with why."""
    config_text = OmegaConf.to_yaml(cfg, resolve=True)
    info = {
        "seed": cfg.seed,
        "config_sha256": hashlib.sha256(config_text.encode()).hexdigest(),  # alpaca-reproduce refuses an edited one
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": sys.argv,
        "host": platform.node(),
        "versions": package_versions(),
        "git": git_state(),
        **choices,
    }
    atomic_write_text(Path(run_dir) / "config_resolved.yaml", config_text)
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
