"""A finished run folder as something to predict with: its config, its results and one round's model.

``open_run`` checks what prediction and export need before any model is loaded, and says how to fix what is
missing: a run that never finished, a round whose model was not kept, a model folder cut short.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from alpaca_lightning.artifacts import is_complete, read_json
from alpaca_lightning.errors import AlpacaError


@dataclass(frozen=True)
class TrainedRun:
    run_dir: Path
    cfg: DictConfig  # the run's config_resolved.yaml
    results: dict[str, Any]  # results.json
    rounds: list[dict[str, Any]]  # rounds.json: one record per round
    round_index: int  # the round whose model this is (the reported one unless asked otherwise)
    label_names: list[str]

    @property
    def model_dir(self) -> Path:
        return round_model_dir(self.run_dir, self.round_index)

    @property
    def round_record(self) -> dict[str, Any]:
        return next(r for r in self.rounds if r["round"] == self.round_index)

    @property
    def is_reported_round(self) -> bool:
        return self.round_index == self.results["best_round"]


def round_model_dir(run_dir: Path, round_index: int) -> Path:
    return Path(run_dir) / "rounds" / f"round_{round_index}" / "model"


def open_run(run_dir: str | Path, round_index: int | None = None) -> TrainedRun:
    """The finished run in ``run_dir`` with the model of ``round_index`` (None: the reported round)."""
    run_dir = Path(run_dir).expanduser()
    if not run_dir.is_dir():
        raise AlpacaError(f"{run_dir} is not a folder. Give the output folder of an alpaca-train run "
                          f"(it holds results.json and rounds/).")
    if not (run_dir / "results.json").is_file():
        raise AlpacaError(
            f"The run in {run_dir} is not finished: it has no results.json. Run the same alpaca-train command with "
            f"paths.output_dir={run_dir} to finish it (complete stages and rounds are reused), then predict."
        )
    cfg = OmegaConf.load(run_dir / "config_resolved.yaml")
    results = read_json(run_dir / "results.json")
    rounds = read_json(run_dir / "rounds.json")
    chosen = results["best_round"] if round_index is None else int(round_index)
    ran = [r["round"] for r in rounds]
    if chosen not in ran:
        raise AlpacaError(f"Round {chosen} did not run in {run_dir}; its rounds are {ran}. Choose one of them.")
    model_dir = round_model_dir(run_dir, chosen)
    if not is_complete(model_dir):
        kept = [i for i in ran if is_complete(round_model_dir(run_dir, i))]
        raise AlpacaError(
            f"The model of round {chosen} is not kept in {run_dir} (rounds with a model: {kept}). A run keeps the "
            f"reported round's model and the teachers it still needs; schedule.keep_all_models=true keeps every "
            f"round's. Choose one of {kept}."
        )
    return TrainedRun(run_dir, cfg, results, rounds, chosen, run_label_names(cfg, results))


def run_label_names(cfg: DictConfig, results: dict[str, Any]) -> list[str]:
    """Recorded in results.json; runs from before that record read them from the config."""
    names = results.get("label_names") or OmegaConf.to_container(cfg.task, resolve=True).get("label_names")
    if not names:
        raise AlpacaError("The run records no label names (results.json lacks label_names and task.label_names is "
                          "null). Re-run it with this version of alpaca-train.")
    return [str(name) for name in names]


def apply_overrides(cfg: DictConfig, overrides: list[str], conf_dir: Path) -> DictConfig:
    """``key=value`` dotlist overrides on a run's config, plus ``hardware=<name>`` to swap in conf/hardware/<name>.yaml
    (the same names as alpaca-train's)."""
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    dotlist = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise AlpacaError(f"Override '{item}' is not key=value, e.g. hardware=gpu or data.predict_batch_size=256.")
        if key == "hardware" and "." not in value:
            path = conf_dir / "hardware" / f"{value}.yaml"
            if not path.is_file():
                choices = sorted(p.stem for p in (conf_dir / "hardware").glob("*.yaml"))
                raise AlpacaError(f"hardware={value}: no such option; choose one of {choices}.")
            cfg.hardware = OmegaConf.load(path)
            continue
        if OmegaConf.select(cfg, key, default="__absent__") == "__absent__":
            raise AlpacaError(f"Override '{item}': the run's config has no key '{key}'. Prediction reads the "
                              f"hardware.* and data.* settings (e.g. data.predict_batch_size, hardware.precision).")
        dotlist.append(item)
    return OmegaConf.merge(cfg, OmegaConf.from_dotlist(dotlist))
