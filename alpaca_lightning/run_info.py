"""What makes a run reproducible: the resolved config, the seed, package versions and the git commit."""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from alpaca_lightning.artifacts import atomic_write_json, atomic_write_text
from alpaca_lightning.assets import REPO_ROOT

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
    atomic_write_text(Path(run_dir) / "config_resolved.yaml", config_text)
    atomic_write_json(Path(run_dir) / "run_info.json", info)
    return info
