"""Entry point: ``alpaca-train`` or ``python -m alpaca_lightning.train`` (a Hydra app; conf/train.yaml).

Returns the optimized metric (``optimized_metric``, a validation score by default) so Hydra sweepers can use it.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from alpaca_lightning.assets import REPO_ROOT, register_resolvers
from alpaca_lightning.errors import AlpacaError
from alpaca_lightning.pipeline import run

register_resolvers()


@hydra.main(version_base="1.3", config_path=str(REPO_ROOT / "conf"), config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        results = run(cfg)
    except AlpacaError as err:
        # A problem the user can fix: the message names it and the fix; a traceback would only bury it.
        print(f"alpaca-train: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    metric = cfg.get("optimized_metric")
    if not metric:
        return None
    section, _, name = metric.partition(":")
    return results[section][name]


if __name__ == "__main__":
    main()
