"""Entry point: ``alpaca-train`` or ``python -m alpaca_lightning.train`` (a Hydra app; conf/train.yaml).

Returns the optimized metric (``optimized_metric``, a validation score by default) so Hydra sweepers can use it.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from alpaca_lightning.assets import REPO_ROOT, register_resolvers
from alpaca_lightning.pipeline import run

register_resolvers()


@hydra.main(version_base="1.3", config_path=str(REPO_ROOT / "conf"), config_name="train")
def main(cfg: DictConfig) -> float | None:
    results = run(cfg)
    metric = cfg.get("optimized_metric")
    if not metric:
        return None
    section, _, name = metric.partition(":")
    return results[section][name]


if __name__ == "__main__":
    main()
