"""The model card of an exported model: ``README.md`` with the Hugging Face hub's YAML metadata.

It says what the model is (base model, task, labels), what trained it (gold and pseudo-labels), how well it did
(the run's validation and test metrics, round 0 beside the exported round), how to load it with the format's own
library, and the config that reproduces it (also saved as ``alpaca_config.yaml``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from alpaca_lightning.inference.run_folder import TrainedRun

AGAIN = "paths.output_dir=$PWD/again hydra.run.dir=$PWD/again"  # a new folder, not the recorded run's
SHOWN_METRICS = {"acc": "accuracy", "f1_macro": "macro F1", "f1": "entity F1"}


def base_model(run: TrainedRun) -> str | None:
    """The backbone's hub name or folder; None for a backbone built by the run (the tiny test model)."""
    backbone = OmegaConf.to_container(run.cfg.model.backbone, resolve=True)
    return backbone.get("name_or_path")


def metric_rows(run: TrainedRun) -> list[tuple[str, str, float, float]]:
    """(split, metric, round 0, exported round) for every shown metric the run recorded."""
    first = next(r for r in run.rounds if r["round"] == 0)
    rows = []
    for split in ("val", "test"):
        for key, name in SHOWN_METRICS.items():
            metric = f"{split}/{key}"
            if metric in run.round_record and metric in first:
                rows.append(("validation" if split == "val" else "test", name, first[metric],
                             run.round_record[metric]))
    return rows


def front_matter(run: TrainedRun, library: str, pipeline_tag: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"library_name": library, "pipeline_tag": pipeline_tag,
                            "tags": ["alpaca-lightning", "self-training", "few-shot", "pseudo-labels"]}
    if base_model(run) and not Path(base_model(run)).is_absolute():
        meta["base_model"] = base_model(run)
    results = []
    for split in ("validation", "test"):
        metrics = [{"type": name.replace(" ", "_").lower(), "value": round(float(value), 4), "name": f"{split} {name}"}
                   for row_split, name, _, value in metric_rows(run) if row_split == split]
        if metrics:
            results.append({"task": {"type": pipeline_tag},
                            "dataset": {"name": run.cfg.task.name, "type": run.cfg.task.name, "split": split},
                            "metrics": metrics})
    meta["model-index"] = [{"name": f"{run.cfg.task.name}-alpaca-round{run.round_index}", "results": results}]
    return meta


def training_lines(run: TrainedRun) -> list[str]:
    gold = run.results["splits"]["labelled"]
    pseudo = int(run.round_record.get("pseudo/count", 0) or 0)
    kind = str((run.cfg.task.get("kind") or {}).get("_target_", ""))
    unit = "sentences" if kind.endswith("TokenClassification") else "examples"
    return [
        f"- gold labels: {gold} labelled {unit} ({run.cfg.split.labels_per_class} per class as drawn)",
        f"- pseudo-labels: {pseudo} from the unlabelled pool of {run.results['splits']['pool']}"
        + (" (round 0 is supervised only)" if run.round_index == 0 else f" (round {run.round_index})"),
        f"- validation: {run.results['splits']['validation']} {unit}, test: {run.results['splits']['test']}",
        f"- seed {run.cfg.seed}; run config SHA-256 `{run.results.get('config_sha256', '?')}`",
    ]


def write_model_card(run: TrainedRun, out: Path, library: str, pipeline_tag: str, usage: str) -> Path:
    config_text = (run.run_dir / "config_resolved.yaml").read_text()
    (out / "alpaca_config.yaml").write_text(config_text)
    labels = ", ".join(f"`{name}`" for name in run.label_names)
    table = ["| split | metric | round 0 (gold labels only) | this model |", "|---|---|---|---|"]
    table += [f"| {split} | {name} | {100 * first:.1f}% | {100 * now:.1f}% |"
              for split, name, first, now in metric_rows(run)]
    base = base_model(run) or "a small BERT built by the run (tests)"
    lines = [
        "---", yaml.safe_dump(front_matter(run, library, pipeline_tag), sort_keys=False).rstrip(), "---", "",
        f"# {run.cfg.task.name}: round {run.round_index} of an alpaca-lightning run", "",
        f"A {pipeline_tag.replace('-', ' ')} model fine-tuned from `{base}` by self-training with pseudo-labels "
        f"(alpaca-lightning), exported as {library}.", "",
        f"Labels, in output order: {labels}.", "", "## Training data", "", *training_lines(run), "",
        "## Results", "", "As the run measured them (alpaca-lightning's fp32 or bf16 prediction path).", "",
        *table, "", "## Use", "", usage.strip(), "", "## Reproduce", "",
        "The run's resolved config is `alpaca_config.yaml`. With the data at the same paths:", "",
        "```bash", f"alpaca-train --config-path $PWD --config-name alpaca_config {AGAIN}", "```", "",
        "<details><summary>config</summary>", "", "```yaml", config_text.rstrip(), "```", "", "</details>", "",
    ]
    path = out / "README.md"
    path.write_text("\n".join(lines))
    return path
